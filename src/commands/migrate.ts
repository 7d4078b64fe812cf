/**
 * `lo-migrate migrate`: the original tool's job, with its flags, short forms and defaults.
 */
import { Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { RowsFailed } from "../domain/Errors.ts"
import { defaults, validate } from "../domain/Settings.ts"
import * as Migration from "../Migration.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import { writeStderr } from "../Output.ts"
import { connectionFlags, described, int } from "./Flags.ts"
import { planFlags, printPlan } from "./plan.ts"

export { connectionFlags }

export const migrate = Command.make("migrate", {
  ...connectionFlags,
  receiverThreads: int("receiver-threads", "threads reading large objects from PostgreSQL", defaults.receiverThreads),
  storerThreads: int("storer-threads", "threads writing objects to S3", defaults.storerThreads),
  committerThreads: int("committer-threads", "threads recording sha2 in PostgreSQL", defaults.committerThreads),
  receiverQueue: int("receiver-queue", "capacity of the receive queue (objects)", defaults.receiverQueue),
  storerQueue: int("storer-queue", "capacity of the store queue (objects)", defaults.storerQueue),
  committerQueue: int("committer-queue", "capacity of the commit queue (objects)", defaults.committerQueue),
  commitChunk: int("commit-chunk", "sha2 updates per statement and transaction", defaults.commitChunk),
  inMemMax: int("in-mem-max", "objects up to this size (KiB) stay in memory, larger ones go to a temp file", defaults.inMemMax),
  uploadChunkSize: int("upload-chunk-size", "multipart part size in KiB (at least 5120); larger objects are uploaded in parts", defaults.uploadChunkSize),
  interval: int("interval", "seconds between status reports", defaults.interval).pipe(Flag.withAlias("i")),
  retries: int("retries", "attempts per S3 or PostgreSQL call before it counts as failed", defaults.retries),
  tempDir: Flag.Directory("temp-dir").pipe(
    Flag.withDescription(described("directory for temp files of objects above --in-mem-max", { default: "the OS temp dir", env: "TMPDIR" })),
    Flag.optional
  ),
  finalize: Flag.Boolean("finalize").pipe(
    Flag.withAlias("f"),
    Flag.withDescription("after a run with no failure, once every migrated object verifies (HEAD): make sha2 NOT NULL and add a unique index on it"),
    Flag.withDefault(false)
  ),
  dryRun: Flag.Boolean("dry-run").pipe(
    Flag.withDescription("print the plan (as `lo-migrate plan`) and stop: writes nothing to PostgreSQL or S3"),
    Flag.withDefault(false)
  ),
  ...planFlags
}, Effect.fn("migrate")(function*(flags) {
  const settings = yield* validate({
    ...flags,
    s3Url: Option.getOrUndefined(flags.s3Url),
    accessKey: Option.getOrUndefined(flags.accessKey),
    secretKey: Option.getOrUndefined(flags.secretKey),
    pathStyle: Option.getOrUndefined(flags.pathStyle),
    tempDir: Option.getOrUndefined(flags.tempDir)
  })
  if (flags.dryRun) return yield* printPlan({ ...flags, pgUrl: settings.pgUrl, s3: settings })
  yield* writeStderr(configurationBlock(settings))
  const summary = yield* Migration.run(settings, { report: writeStderr }).pipe(Migration.provideTo(settings))
  for (const failure of summary.failures) {
    yield* writeStderr(`FAILED ${failure.key}${failure.oid === null ? "" : ` (oid ${failure.oid})`}: ${failure.reason}: ${failure.detail}\n`)
  }
  if (summary.failed > summary.failures.length) {
    yield* writeStderr(`... and ${summary.failed - summary.failures.length} more failures (see the log)\n`)
  }
  yield* Console.log(
    `migrated ${summary.migrated} object(s), ${formatBytes(summary.bytes)} (${summary.bytes} bytes) in ` +
      `${(summary.durationMs / 1000).toFixed(1)} s; ${summary.alreadyMigrated} of ${summary.total} were already migrated; ` +
      `${summary.failed} failed`
  )
  if (summary.failed > 0) return yield* new RowsFailed({ failed: summary.failed })
  yield* Console.log(
    `Adding NOT NULL constraint and UNIQUE INDEX ... ${summary.finalized ? "done" : "skipping (--finalize not given)"}`
  )
  yield* Console.log("Migration completed")
})).pipe(Command.withDescription("Copy every large object of _nice_binary into S3 under its SHA-256 and record it in sha2"))

const configurationBlock = (s: import("../domain/Settings.ts").Settings) =>
  [
    "**************** configuration ****************",
    `receiver threads:  ${s.receiverThreads}`,
    `storer threads:    ${s.storerThreads}`,
    `committer threads: ${s.committerThreads}`,
    `receiver queue:    ${s.receiverQueue}`,
    `storer queue:      ${s.storerQueue}`,
    `committer queue:   ${s.committerQueue}`,
    `in-memory max:     ${s.inMemMax / 1024} KiB`,
    `upload part size:  ${s.uploadChunkSize / 1024} KiB`,
    `commit chunk:      ${s.commitChunk}`,
    `target:            s3://${s.bucket} at ${s.s3Url ?? `AWS (${s.region})`}`,
    "",
    ""
  ].join("\n")
