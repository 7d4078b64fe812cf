/**
 * `lo-migrate plan`: what a migration would do, without writing anything to PostgreSQL or S3.
 */
import { Effect, Layer, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as Connections from "../migrate/Connections.ts"
import { SettingsError } from "../domain/Errors.ts"
import { defaults, type Settings, validatePgCa, validatePgUrl } from "../domain/Settings.ts"
import * as Plan from "../migrate/Plan.ts"
import { Stats } from "../core/Stats.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { settingsOf } from "./Connect.ts"
import * as Profile from "../domain/Profile.ts"
import type { ProfileInput } from "../domain/Profile.ts"
import { profileFlags, profileInput } from "./ProfileFlags.ts"
import { connectionFlags, int, interval, retries } from "./Flags.ts"
import { atLeast } from "./Connect.ts"
import * as ProgressMode from "./ProgressMode.ts"

const MiB = 1024 * 1024

export const planFlags = {
  sample: int("sample", "objects to read for the duration estimate (0: no estimate)", 20),
  sampleMib: int("sample-mib", "stop sampling after this many MiB; larger objects are not sampled", 64)
}

/** Read-only: can migrate reach and read the bucket? Said in a note, never written to. */
const s3Note = (settings: Settings) =>
  Effect.gen(function*() {
    const store = yield* ObjectStore
    const where = `${store.target} at ${settings.s3Url ?? `AWS (${settings.region})`}`
    return yield* store.checkRead.pipe(
      Effect.as(`S3 ${where}: reachable and readable (checked read-only; migrate's probe proves write access)`),
      Effect.catchTag("StoreUnavailable", (error) =>
        Effect.succeed(
          `S3 ${where}: S3 bucket ${error.bucket}: ${error.problem}; migrate would refuse to start${error.fix === undefined ? "" : ` (${error.fix})`}`
        ))
    )
  }).pipe(Effect.provide(Connections.store(settings, 1).pipe(Layer.provide(Stats.layer))))

/** `plan` covers the whole table: a shard is refused (exit 2), not half answered. */
export const planProfile = (input: ProfileInput) =>
  Effect.gen(function*() {
    const { profile, shard } = yield* Profile.validate(input)
    if (shard !== undefined) {
      return yield* new SettingsError({ setting: "--shard", problem: "plan shows the whole table; run it without --shard" })
    }
    return profile
  })

/** Prints the plan; shared with `migrate --dry-run`. S3 is only read, and only when settings are given. */
export const printPlan = (input: {
  readonly pgUrl: Parameters<typeof validatePgUrl>[0]
  readonly pgCa: Option.Option<string>
  readonly sample: number
  readonly sampleMib: number
  readonly receiverThreads: number
  readonly retries: number
  readonly pgTimeout: number
  readonly s3: Settings | undefined
  readonly profile?: Profile.Profile | undefined
  /** how the sampling shows its progress; json: the plan goes to stderr, stdout carries the events */
  readonly progress: ProgressMode.ProgressMode
  /** seconds between progress lines */
  readonly interval: number
}) =>
  Effect.gen(function*() {
    const pgUrl = yield* validatePgUrl(input.pgUrl)
    const pgCa = yield* validatePgCa(Option.getOrUndefined(input.pgCa))
    if (input.sample < 0) return yield* new SettingsError({ setting: "--sample", problem: `${input.sample} is below the minimum of 0` })
    if (input.sampleMib < 1) return yield* new SettingsError({ setting: "--sample-mib", problem: `${input.sampleMib} is below the minimum of 1` })
    if (input.receiverThreads < 1) {
      return yield* new SettingsError({ setting: "--receiver-threads", problem: `${input.receiverThreads} is below the minimum of 1` })
    }
    yield* atLeast("--interval", input.interval, 1)
    const task = ProgressMode.task(input.progress, { task: "plan", unit: "objects", interval: `${input.interval} seconds` })
    const plan = yield* Plan.make({
      sample: input.sample,
      sampleBytes: input.sampleMib * MiB,
      receiverThreads: input.receiverThreads,
      watch: task.watch
    }).pipe(Connections.provide(pgUrl, Connections.database({
      pgUrl,
      pgCa,
      retries: input.retries,
      connections: 2,
      profile: input.profile,
      pgTimeout: input.pgTimeout
    })))
    const notes = input.s3 === undefined
      ? ["S3 not checked (no --bucket given)"]
      : [yield* s3Note(input.s3)]
    yield* task.out(Plan.format(plan, notes).trimEnd())
  })

export const plan = Command.make("plan", {
  ...connectionFlags,
  ...profileFlags,
  bucket: connectionFlags.bucket.pipe(Flag.optional),
  ...planFlags,
  receiverThreads: int("receiver-threads", "parallel readers the estimate assumes (as migrate's flag)", defaults.receiverThreads),
  progress: ProgressMode.flag,
  interval,
  retries
}, Effect.fn("plan")(function*(flags) {
  // S3 is optional: with a bucket, plan checks (read-only) that migrate could use it
  const profile = yield* planProfile(profileInput(flags))
  const s3 = Option.isSome(flags.bucket) ? yield* settingsOf({ ...flags, bucket: flags.bucket.value }) : undefined
  yield* printPlan({ ...flags, pgUrl: Option.getOrUndefined(flags.pgUrl), s3, profile })
})).pipe(
  Command.withDescription(
    "Show what migrate would do: objects and bytes to migrate, a size histogram, problems, an estimated duration; writes nothing"
  )
)
