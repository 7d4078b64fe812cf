/**
 * `lo-migrate migrate`: the original tool's job, with its flags, short forms and defaults.
 */
import { Config, Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { RowsFailed, RunStopped, SettingsError } from "../domain/Errors.ts"
import { defaults, describeS3Write, validate } from "../domain/Settings.ts"
import * as Migration from "../migrate/Migration.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import { writeStderr } from "../core/Output.ts"
import * as ProgressMode from "./ProgressMode.ts"
import { StopRequest } from "../core/StopRequest.ts"
import { connectionFlags, described, int, optionalInt, s3WriteFlags } from "./Flags.ts"
import { connectionInput, s3WriteInput } from "./Connect.ts"
import { modeFlags, modeOf } from "./MigrateModes.ts"
import { planFlags, planProfile, printPlan } from "./plan.ts"
import { profileFlags, profileInput, type ProfileFlagValues } from "./ProfileFlags.ts"

export { connectionFlags }

/** How progress is shown, and metrics: shared by every command that runs a migration. */
export const progressFlags = {
  progress: ProgressMode.flag,
  metricsPort: Flag.Int("metrics-port").pipe(
    Flag.withDescription(described("serve Prometheus metrics at http://HOST:PORT/metrics during the run", {
      default: "off",
      env: "LO_MIGRATE_METRICS_PORT"
    })),
    Flag.withFallbackConfig(Config.Int("LO_MIGRATE_METRICS_PORT")),
    Flag.optional
  ),
  metricsHost: Flag.String("metrics-host").pipe(
    Flag.withDescription(described("address the metrics server listens on", {
      default: "127.0.0.1",
      env: "LO_MIGRATE_METRICS_HOST"
    })),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_METRICS_HOST")),
    Flag.withDefault("127.0.0.1")
  )
}

/** RunOptions for the progress flags. */
export const progressRunOptions = (
  flags: { readonly progress: ProgressMode.ProgressMode; readonly metricsPort: Option.Option<number>; readonly metricsHost: string },
  intervalSeconds: number
) => {
  const mode = ProgressMode.resolve(flags.progress, process.stderr.isTTY === true)
  const { console, ...shown } = ProgressMode.runOptions(mode, intervalSeconds)
  return {
    mode,
    /** wrap the run: on a terminal, log lines then go above the live display */
    around: <A, E, R>(run: Effect.Effect<A, E, R>) =>
      console === undefined ? run : Effect.provideService(run, Console.Console, console),
    options: {
      ...shown,
      ...(Option.isSome(flags.metricsPort)
        ? {
          metrics: { port: flags.metricsPort.value, host: flags.metricsHost },
          onMetricsListening: (port: number) =>
            Effect.logInfo(`metrics at http://${flags.metricsHost.includes(":") ? `[${flags.metricsHost}]` : flags.metricsHost}:${port}/metrics`)
        }
        : {})
    } satisfies Migration.RunOptions
  }
}

export const migrate = Command.make("migrate", {
  ...connectionFlags,
  ...s3WriteFlags,
  ...progressFlags,
  workers: Flag.Int("workers").pipe(
    Flag.withAlias("w"),
    Flag.withDescription(
      "scales the stages together: N storers and one receiver per 8 storers (rounded up); the PostgreSQL pool follows; " +
        "--receiver-threads and --storer-threads win over it [default: 16]"
    ),
    Flag.optional
  ),
  receiverThreads: optionalInt("receiver-threads", "threads reading large objects from PostgreSQL", defaults.receiverThreads),
  storerThreads: optionalInt(
    "storer-threads",
    "threads writing objects to S3; given alone it pins their number, by default it adapts from 16 up to --max-storer-threads while more raise the rate",
    defaults.storerThreads
  ),
  maxStorerThreads: optionalInt(
    "max-storer-threads",
    "the adaptive storers' ceiling (they start at --storer-threads); equal to it pins them",
    defaults.maxStorerThreads
  ),
  committerThreads: int("committer-threads", "threads recording sha2 in PostgreSQL", defaults.committerThreads),
  receiverQueue: int("receiver-queue", "capacity of the receive queue (objects)", defaults.receiverQueue),
  storerQueue: int("storer-queue", "capacity of the store queue (objects)", defaults.storerQueue),
  committerQueue: int("committer-queue", "capacity of the commit queue (objects)", defaults.committerQueue),
  commitChunk: int("commit-chunk", "sha2 updates per statement and transaction", defaults.commitChunk),
  inMemMax: int("in-mem-max", "objects up to this size (KiB) stay in memory, larger ones go to a temp file", defaults.inMemMax),
  uploadChunkSize: int("upload-chunk-size", "multipart part size in KiB (at least 5120); larger objects are uploaded in parts", defaults.uploadChunkSize),
  readChunkSize: int(
    "read-chunk-size",
    "KiB read from a large object per statement (64 to 8192): larger reads a little faster, smaller holds less memory",
    defaults.readChunkSize
  ),
  interval: int("interval", "seconds between status reports", defaults.interval).pipe(Flag.withAlias("i")),
  memoryBudget: int(
    "memory-budget",
    "MiB of object bytes held in memory between reading and storing; receivers wait when it is used up",
    defaults.memoryBudget
  ),
  retries: int("retries", "attempts per S3 or PostgreSQL call before it counts as failed", defaults.retries),
  tempDir: Flag.Directory("temp-dir").pipe(
    Flag.withDescription(described("directory for temp files of objects above --in-mem-max", { default: "the OS temp dir", env: "TMPDIR" })),
    Flag.optional
  ),
  failures: Flag.String("failures").pipe(
    Flag.withDescription("also write every failed row to this file, one JSON object per line (truncated at the start)"),
    Flag.optional
  ),
  finalize: Flag.Boolean("finalize").pipe(
    Flag.withAlias("f"),
    Flag.withDescription("after a run with no failure, once every migrated object verifies (HEAD): make sha2 NOT NULL and add a unique index on it (table profile: --sha256-column NOT NULL, no index; relstorage: every blob in blob_state, S3 keys as zodb-pgjsonb reads them; no constraint on blob_state, which zodb-pgjsonb writes too)"),
    Flag.withDefault(false)
  ),
  dryRun: Flag.Boolean("dry-run").pipe(
    Flag.withDescription("print the plan (as `lo-migrate plan`) and stop: writes nothing to PostgreSQL or S3"),
    Flag.withDefault(false)
  ),
  ...planFlags,
  ...modeFlags,
  ...profileFlags
}, Effect.fn("migrate")(function*(flags) {
  const { metricsHost: _host, metricsPort, progress: _progress, ...settingsFlags } = flags
  if (Option.isSome(metricsPort) && (metricsPort.value < 0 || metricsPort.value > 65535)) {
    return yield* new SettingsError({ setting: "--metrics-port", problem: `${metricsPort.value} is not a TCP port` })
  }
  const settings = yield* validate({
    // the profile flags are Options here; profileInput below gives them as settings
    ...(settingsFlags as Omit<typeof settingsFlags, keyof ProfileFlagValues>),
    ...connectionInput(flags),
    ...s3WriteInput(flags),
    tempDir: Option.getOrUndefined(flags.tempDir),
    failuresFile: Option.getOrUndefined(flags.failures),
    workers: Option.getOrUndefined(flags.workers),
    receiverThreads: Option.getOrUndefined(flags.receiverThreads),
    storerThreads: Option.getOrUndefined(flags.storerThreads),
    maxStorerThreads: Option.getOrUndefined(flags.maxStorerThreads),
    ...profileInput(flags)
  })
  if (flags.dryRun) {
    const profile = yield* planProfile(profileInput(flags))
    return yield* printPlan({ ...flags, pgUrl: settings.pgUrl, receiverThreads: settings.receiverThreads, s3: settings, profile })
  }
  if (settings.finalize) {
    if (settings.shard !== undefined) {
      return yield* new SettingsError({ setting: "--finalize", problem: "finalize covers the whole table: run it once without --shard after every shard has finished" })
    }
  }
  const mode = yield* modeOf(flags)
  yield* writeStderr(configurationBlock(settings))
  if (mode.deferred !== undefined) {
    const options = describeS3Write(settings.s3Write)
    yield* writeStderr(
      `deferred: objects are staged and listed in ${mode.deferred}; S3 is not contacted${
        options === undefined ? "" : ` (${options}: give them to upload-blobs, which writes the objects)`
      }\n\n`
    )
  }
  // the first SIGINT/SIGTERM asks for a graceful stop (bin.ts); without the service, never
  const stopRequest = yield* Effect.serviceOption(StopRequest)
  const stopping = Option.isSome(stopRequest) ? stopRequest.value.requested : Effect.succeed(false)
  if (Option.isSome(stopRequest)) yield* stopRequest.value.enable
  const progress = progressRunOptions(flags, settings.interval)
  const summary = yield* Migration.run(settings, { ...progress.options, stopping, limit: mode.limit }).pipe(
    Migration.provideTo(settings, { store: mode.store }),
    progress.around
  )
  for (const failure of summary.failures) {
    yield* writeStderr(`FAILED ${failure.key}${failure.oid === null ? "" : ` (oid ${failure.oid})`}: ${failure.reason}: ${failure.detail}\n`)
  }
  if (summary.failed > summary.failures.length) {
    yield* writeStderr(`... and ${summary.failed - summary.failures.length} more failures (see the log)\n`)
  }
  // --progress json: stdout carries the JSON events only (the summary is the last one)
  const log = progress.mode === "json" ? (_: string) => Effect.void : Console.log
  if (mode.deferred !== undefined) {
    // objects the profile keeps in the database (relstorage's inline blobs) were recorded, not staged
    const inline = summary.inline ?? { objects: 0, bytes: 0 }
    const staged = { objects: summary.migrated - inline.objects, bytes: summary.bytes - inline.bytes }
    yield* log(
      `staged ${staged.objects} object(s), ${formatBytes(staged.bytes)} (${staged.bytes} bytes) in ` +
        `${(summary.durationMs / 1000).toFixed(1)} s into ${mode.deferred}; ` +
        (inline.objects > 0 ? `recorded ${inline.objects} inline object(s), ${formatBytes(inline.bytes)}, in the database (no upload needed); ` : "") +
        `${summary.failed} failed; no staged row is marked until lo-migrate upload-blobs ${mode.deferred} has uploaded them`
    )
    if (summary.stopped) return yield* new RunStopped({ migrated: summary.migrated })
    if (summary.failed > 0) return yield* new RowsFailed({ failed: summary.failed })
    return
  }
  yield* log(
    `migrated ${summary.migrated} object(s), ${formatBytes(summary.bytes)} (${summary.bytes} bytes) in ` +
      `${(summary.durationMs / 1000).toFixed(1)} s; ${summary.alreadyMigrated} of ${summary.total} were already migrated; ` +
      `${summary.failed} failed`
  )
  if (summary.stopped) return yield* new RunStopped({ migrated: summary.migrated })
  if (summary.failed > 0) return yield* new RowsFailed({ failed: summary.failed })
  yield* log(
    `${settings.profile._tag === "relstorage" ? "Checking blob_state (every blob recorded, S3 keys as zodb-pgjsonb reads them)" : `Adding NOT NULL constraint${settings.profile._tag === "table" ? "" : " and UNIQUE INDEX"}`} ... ${summary.finalized ? "done" : "skipping (--finalize not given)"}`
  )
  yield* log("Migration completed")
})).pipe(Command.withDescription("Copy every large object of the source (--profile; default _nice_binary) into S3 and record it (nice2: sha2 = its SHA-256)"))

const configurationBlock = (s: import("../domain/Settings.ts").Settings) =>
  [
    "**************** configuration ****************",
    `receiver threads:  ${s.receiverThreads}`,
    `storer threads:    ${s.storerThreads}`,
    ...(s.maxStorerThreads > s.storerThreads ? [`  adaptive up to:   ${s.maxStorerThreads}`] : []),
    `committer threads: ${s.committerThreads}`,
    `receiver queue:    ${s.receiverQueue}`,
    `storer queue:      ${s.storerQueue}`,
    `committer queue:   ${s.committerQueue}`,
    `in-memory max:     ${s.inMemMax / 1024} KiB`,
    `upload part size:  ${s.uploadChunkSize / 1024} KiB`,
    `read chunk size:   ${s.readChunkSize / 1024} KiB`,
    `commit chunk:      ${s.commitChunk}`,
    `memory budget:     ${s.memoryBudget / 1024 / 1024} MiB`,
    `target:            s3://${s.bucket} at ${s.s3Url ?? `AWS (${s.region})`}`,
    ...(describeS3Write(s.s3Write) === undefined ? [] : [`object options:    ${describeS3Write(s.s3Write)}`]),
    `source:            ${s.profile._tag === "nice2" ? "nice2 (_nice_binary)" : s.profile._tag === "table" ? `table ${s.profile.table.join(".")}, key ${s.profile.keyColumns.join(", ")}, S3 key ${s.profile.keyTemplate}` : `relstorage blob_chunk -> blob_state, S3 from ${s.profile.blobThreshold} bytes`}${s.shard === undefined ? "" : `, shard ${s.shard.index}/${s.shard.count}`}`,
    "",
    ""
  ].join("\n")
