/**
 * `lo-migrate plan`: what a migration would do, without writing anything to PostgreSQL or S3.
 */
import { Console, Effect } from "effect"
import { Command } from "effect/cli"
import { SettingsError } from "../domain/Errors.ts"
import { defaults, validatePgUrl } from "../domain/Settings.ts"
import * as Connections from "../Connections.ts"
import * as Plan from "../Plan.ts"
import { connectionFlags, int, retries } from "./Flags.ts"

const MiB = 1024 * 1024

export const planFlags = {
  sample: int("sample", "objects to read for the duration estimate (0: no estimate)", 20),
  sampleMib: int("sample-mib", "stop sampling after this many MiB; larger objects are not sampled", 64)
}

/** Prints the plan; shared with `migrate --dry-run`. */
export const printPlan = (input: {
  readonly pgUrl: Parameters<typeof validatePgUrl>[0]
  readonly sample: number
  readonly sampleMib: number
  readonly receiverThreads: number
  readonly retries: number
}) =>
  Effect.gen(function*() {
    const pgUrl = yield* validatePgUrl(input.pgUrl)
    if (input.sample < 0) return yield* new SettingsError({ setting: "--sample", problem: `${input.sample} is below the minimum of 0` })
    if (input.sampleMib < 1) return yield* new SettingsError({ setting: "--sample-mib", problem: `${input.sampleMib} is below the minimum of 1` })
    if (input.receiverThreads < 1) {
      return yield* new SettingsError({ setting: "--receiver-threads", problem: `${input.receiverThreads} is below the minimum of 1` })
    }
    const plan = yield* Plan.make({
      sample: input.sample,
      sampleBytes: input.sampleMib * MiB,
      receiverThreads: input.receiverThreads
    }).pipe(Connections.provide(pgUrl, Connections.database({ pgUrl, retries: input.retries, connections: 2 })))
    yield* Console.log(Plan.format(plan).trimEnd())
  })

export const plan = Command.make("plan", {
  pgUrl: connectionFlags.pgUrl,
  ...planFlags,
  receiverThreads: int("receiver-threads", "parallel readers the estimate assumes (as migrate's flag)", defaults.receiverThreads),
  retries
}, Effect.fn("plan")(function*(flags) {
  yield* printPlan(flags)
})).pipe(
  Command.withDescription(
    "Show what migrate would do: objects and bytes to migrate, a size histogram, problems, an estimated duration; writes nothing"
  )
)
