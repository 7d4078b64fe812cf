/**
 * `lo-migrate upload-blobs MANIFEST`: uploads what `migrate --deferred-blobs MANIFEST` staged, marks
 * each row after its upload, removes each staged file once its row is marked. Safe to kill and rerun.
 */
import { Effect } from "effect"
import { Argument, Command } from "effect/cli"
import { RowsFailed } from "../domain/Errors.ts"
import { defaults, validate } from "../domain/Settings.ts"
import * as Migration from "../migrate/Migration.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import * as UploadBlobs from "../migrate/UploadBlobs.ts"
import { writeStderr } from "../core/Output.ts"
import { SettingsError } from "../domain/Errors.ts"
import { profileFlags, profileInput, type ProfileFlagValues } from "./ProfileFlags.ts"
import { connectionFlags, countFlag, int, interval, retries, s3WriteFlags } from "./Flags.ts"
import { connectionInput, s3WriteInput } from "./Connect.ts"
import * as ProgressMode from "./ProgressMode.ts"

export const uploadBlobs = Command.make("upload-blobs", {
  manifest: Argument.String("manifest").pipe(Argument.withDescription("the manifest written by migrate --deferred-blobs")),
  ...connectionFlags,
  ...s3WriteFlags,
  ...profileFlags,
  storerThreads: int("storer-threads", "objects uploaded at once", defaults.storerThreads),
  committerThreads: int("committer-threads", "threads recording sha2 in PostgreSQL", defaults.committerThreads),
  commitChunk: int("commit-chunk", "sha2 updates per statement and transaction", defaults.commitChunk),
  uploadChunkSize: int("upload-chunk-size", "multipart part size in KiB (at least 5120)", defaults.uploadChunkSize),
  retries,
  interval,
  progress: ProgressMode.flag,
  count: countFlag("read the manifest once to count its lines and bytes")
}, Effect.fn("upload-blobs")(function*(flags) {
  const { count, progress, ...settingsFlags } = flags
  const settings = yield* validate({
    ...(settingsFlags as Omit<typeof settingsFlags, keyof ProfileFlagValues>),
    ...connectionInput(flags),
    ...s3WriteInput(flags),
    ...profileInput(flags)
  })
  if (settings.shard !== undefined) {
    return yield* new SettingsError({ setting: "--shard", problem: "upload-blobs uploads the manifest it is given: run one per shard's manifest, without --shard" })
  }
  const task = ProgressMode.task(progress, { task: "upload-blobs", unit: "lines", interval: `${flags.interval} seconds` })
  const summary = yield* UploadBlobs.run(settings, flags.manifest, {
    watch: task.watch,
    count,
    // json: each failed line as an event too (the FAILED lines follow on stderr)
    onFailure: (failure) => task.event({ event: "failed", ...failure })
  }).pipe(Migration.provideTo(settings))
  for (const failure of summary.failures) {
    yield* writeStderr(`FAILED ${failure.key}${failure.oid === null ? "" : ` (oid ${failure.oid})`}: ${failure.reason}: ${failure.detail}\n`)
  }
  yield* task.out(
    `uploaded ${summary.uploaded} object(s), ${formatBytes(summary.bytes)} (${summary.bytes} bytes) in ` +
      `${(summary.durationMs / 1000).toFixed(1)} s; ${summary.alreadyDone} line(s) were already done; ${summary.failed} failed`
  )
  if (summary.failed > 0) return yield* new RowsFailed({ failed: summary.failed })
})).pipe(Command.withDescription("Upload the objects staged by migrate --deferred-blobs and mark their rows"))
