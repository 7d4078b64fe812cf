/**
 * `lo-migrate verify`: checks the object of every migrated row. Exit 0 when all are good, 1 otherwise.
 */
import { Effect, Exit, Option } from "effect"
import { Command, Flag } from "effect/cli"
import * as NodeFs from "node:fs"
import * as Connections from "../migrate/Connections.ts"
import { SettingsError, VerificationFailed } from "../domain/Errors.ts"
import { type BadObject, describeBad, describeLevel, type VerifyLevel } from "../domain/MigratedObject.ts"
import { writeStderr } from "../core/Output.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { AfterCopy } from "../phases/AfterCopy.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import * as Verification from "../migrate/Verification.ts"
import { atLeast, settingsOf } from "./Connect.ts"
import * as ProgressMode from "./ProgressMode.ts"
import { profileFlags } from "./ProfileFlags.ts"
import { againstSource, concurrency, connectionFlags, count, deep, interval, retries } from "./Flags.ts"

export const levelOf = (flags: { readonly deep: boolean; readonly againstSource: boolean }): VerifyLevel =>
  flags.againstSource ? "source" : flags.deep ? "deep" : "head"

/** The JSON report: where the run stands, and every bad object by key and row. */
export const reportJson = (p: Verification.Progress, extra: Readonly<Record<string, unknown>>) =>
  JSON.stringify(
    {
      ...extra,
      level: p.level,
      from: p.from?.trim() ?? null,
      checkpoint: p.checkpoint?.trim() ?? null,
      complete: p.complete,
      checked: p.checked,
      good: p.good,
      bad: p.badCount,
      bytes: p.bytes,
      sourceSkipped: p.sourceSkipped,
      startedAt: new Date(p.startedAt).toISOString(),
      finishedAt: p.finishedAt === undefined ? null : new Date(p.finishedAt).toISOString(),
      // content made of several large objects (relstorage's chunks): `oids`, all of them in order
      badObjects: p.bad.map((b) => {
        const { event: _, ...fields } = badEvent("bad", b)
        return fields
      })
    },
    null,
    2
  ) + "\n"

/** A bad object as a JSON event (`--progress json`), the same fields as the report's `badObjects`. */
export const badEvent = (event: string, b: BadObject) => ({
  event,
  key: b.row.key.trim(),
  oid: b.row.oid,
  ...(b.row.oids !== undefined && b.row.oids.length > 1 ? { oids: b.row.oids } : {}),
  size: b.row.size ?? null,
  sha2: b.row.sha256 ?? null,
  objectKey: b.objectKey,
  problem: b.problem,
  detail: b.detail
})

export const writeReport = (path: string, text: string) =>
  Effect.try({
    try: () => NodeFs.writeFileSync(path, text),
    catch: (cause) => new SettingsError({ setting: "--report", problem: `cannot write ${path}: ${String(cause)}` })
  })

export const verify = Command.make("verify", {
  ...connectionFlags,
  ...profileFlags,
  deep,
  againstSource,
  concurrency,
  from: Flag.String("from").pipe(
    Flag.withDescription("resume: check only rows whose key is above this one (the checkpoint of an earlier run)"),
    Flag.optional
  ),
  report: Flag.String("report").pipe(Flag.withDescription("also write a JSON report to this file"), Flag.optional),
  count,
  progress: ProgressMode.flag,
  interval,
  retries
}, Effect.fn("verify")(function*(flags) {
  const settings = yield* settingsOf(flags)
  const parallel = yield* atLeast("--concurrency", flags.concurrency, 1)
  yield* atLeast("--interval", flags.interval, 1)
  const level = levelOf(flags)
  const from = Option.getOrUndefined(flags.from)
  const progress = Verification.makeProgress(level, from)
  const task = ProgressMode.task(flags.progress, { task: "verify", unit: "objects", interval: `${flags.interval} seconds` })

  const work = Effect.gen(function*() {
    const source = yield* AfterCopy
    const store = yield* ObjectStore
    yield* writeStderr(
      `verify: ${source.table} against ${store.target} (${describeLevel(level)}), ${parallel} at once` +
        `${from === undefined ? "" : `, after ${from}`}\n`
    )
    yield* Verification.countTotals(progress, { withData: false, count: flags.count })
    yield* task.watch(Effect.sync(() => Verification.taskState(progress)), Verification.run({
      level,
      concurrency: parallel,
      retry: defaultPolicy(settings.retries),
      withData: false,
      onBad: (bad) => task.out(`BAD ${describeBad(bad)}`, badEvent("bad", bad))
    }, progress))
  }).pipe(
    Connections.provide(settings.pgUrl, Connections.databaseAndStore(settings, parallel)),
    // the report and the checkpoint also when the run fails or is interrupted: it can be resumed
    Effect.onExit((exit) =>
      Effect.gen(function*() {
        if (Exit.isFailure(exit)) {
          yield* writeStderr(
            `verify stopped: ${progress.checked} checked of ${progress.total.rows ?? "?"}, ${progress.badCount} bad; ` +
              `checkpoint ${progress.checkpoint?.trim() ?? "(none yet)"}; resume with --from <checkpoint>\n`
          )
        }
        if (Option.isSome(flags.report)) {
          yield* writeReport(flags.report.value, reportJson(progress, { command: "verify", bucket: settings.bucket })).pipe(
            Effect.catch((error) => writeStderr(`lo-migrate: ${error.message}\n`))
          )
        }
      })
    )
  )
  yield* work
  yield* task.out(
    `verified ${progress.checked} migrated object(s), ${Verification.bytesText(progress.bytes)} in ` +
      `${Verification.durationSeconds(progress)} s (${describeLevel(level)}): ${progress.good} good, ${progress.badCount} bad` +
      `${progress.sourceSkipped > 0 ? `; ${progress.sourceSkipped} without a large object to compare (pruned)` : ""}` +
      `; checkpoint ${progress.checkpoint?.trim() ?? "(none)"}`
  )
  if (progress.badCount > 0) {
    return yield* new VerificationFailed({ bad: progress.badCount, consequence: "they are named above (BAD lines)" })
  }
})).pipe(
  Command.withDescription(
    "Check the S3 object of every migrated row: it exists, its size and sha256 metadata match (--deep: also its bytes)"
  )
)
