/**
 * `lo-migrate migrate`: the original tool's job, with its flags, short forms and defaults.
 */
import { Config, Console, Effect, Option } from "effect"
import { Command, Flag } from "effect/cli"
import { RowsFailed } from "../domain/Errors.ts"
import { defaults, validate } from "../domain/Settings.ts"
import * as Migration from "../Migration.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import { writeStderr } from "../Output.ts"

const described = (text: string, options: { readonly default?: unknown; readonly env?: string }) =>
  `${text}${options.default === undefined ? "" : ` [default: ${options.default}]`}${
    options.env === undefined ? "" : ` [env: ${options.env}]`
  }`

const int = (name: string, text: string, fallback: number) =>
  Flag.Int(name).pipe(Flag.withDescription(described(text, { default: fallback })), Flag.withDefault(fallback))

/** An integer flag whose absence matters (a default computed from other flags may apply). */
const optionalInt = (name: string, text: string, fallback: number) =>
  Flag.Int(name).pipe(Flag.withDescription(described(text, { default: fallback })), Flag.optional)

/** The flags every command that talks to PostgreSQL and S3 shares. */
export const connectionFlags = {
  pgUrl: Flag.Redacted("pg-url").pipe(
    Flag.withAlias("p"),
    Flag.withDescription(described("PostgreSQL URL: postgresql://USER:PASS@HOST[:PORT]/DB[?sslmode=require]", {
      env: "LO_MIGRATE_PG_URL"
    })),
    Flag.withFallbackConfig(Config.Redacted("LO_MIGRATE_PG_URL"))
  ),
  s3Url: Flag.String("s3-url").pipe(
    Flag.withAlias("u"),
    Flag.withDescription(described("S3 endpoint URL (Ceph RGW, MinIO, ...); omit for AWS S3", { env: "LO_MIGRATE_S3_URL" })),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_S3_URL")),
    Flag.optional
  ),
  accessKey: Flag.Redacted("access-key").pipe(
    Flag.withAlias("k"),
    Flag.withDescription(described("S3 access key", { env: "AWS_ACCESS_KEY_ID" })),
    Flag.withFallbackConfig(Config.Redacted("AWS_ACCESS_KEY_ID")),
    Flag.optional
  ),
  secretKey: Flag.Redacted("secret-key").pipe(
    Flag.withAlias("s"),
    Flag.withDescription(described("S3 secret key", { env: "AWS_SECRET_ACCESS_KEY" })),
    Flag.withFallbackConfig(Config.Redacted("AWS_SECRET_ACCESS_KEY")),
    Flag.optional
  ),
  bucket: Flag.String("bucket").pipe(
    Flag.withAlias("b"),
    Flag.withDescription(described("S3 bucket (must exist)", { env: "LO_MIGRATE_BUCKET" })),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_BUCKET"))
  ),
  region: Flag.String("region").pipe(
    Flag.withDescription(described("S3 region, used for request signing", { default: defaults.region, env: "AWS_REGION" })),
    Flag.withFallbackConfig(Config.String("AWS_REGION")),
    Flag.withDefault(defaults.region)
  ),
  pathStyle: Flag.Boolean("path-style").pipe(
    Flag.withDescription(
      "path-style URLs (http://host/bucket/key); --no-path-style for virtual-hosted style [default: on with --s3-url, off for AWS]"
    ),
    Flag.optional
  )
}

export const migrate = Command.make("migrate", {
  ...connectionFlags,
  workers: Flag.Int("workers").pipe(
    Flag.withAlias("w"),
    Flag.withDescription(
      "scales the stages together: N storers and one receiver per 8 storers (rounded up); the PostgreSQL pool follows; " +
        "--receiver-threads and --storer-threads win over it [default: 16]"
    ),
    Flag.optional
  ),
  receiverThreads: optionalInt("receiver-threads", "threads reading large objects from PostgreSQL", defaults.receiverThreads),
  storerThreads: optionalInt("storer-threads", "threads writing objects to S3", defaults.storerThreads),
  committerThreads: int("committer-threads", "threads recording sha2 in PostgreSQL", defaults.committerThreads),
  receiverQueue: int("receiver-queue", "capacity of the receive queue (objects)", defaults.receiverQueue),
  storerQueue: int("storer-queue", "capacity of the store queue (objects)", defaults.storerQueue),
  committerQueue: int("committer-queue", "capacity of the commit queue (objects)", defaults.committerQueue),
  commitChunk: int("commit-chunk", "sha2 updates per statement and transaction", defaults.commitChunk),
  inMemMax: int("in-mem-max", "objects up to this size (KiB) stay in memory, larger ones go to a temp file", defaults.inMemMax),
  uploadChunkSize: int("upload-chunk-size", "multipart part size in KiB (at least 5120); larger objects are uploaded in parts", defaults.uploadChunkSize),
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
  finalize: Flag.Boolean("finalize").pipe(
    Flag.withAlias("f"),
    Flag.withDescription("after a run with no failure: make sha2 NOT NULL and add a unique index on it"),
    Flag.withDefault(false)
  )
}, Effect.fn("migrate")(function*(flags) {
  const settings = yield* validate({
    ...flags,
    s3Url: Option.getOrUndefined(flags.s3Url),
    accessKey: Option.getOrUndefined(flags.accessKey),
    secretKey: Option.getOrUndefined(flags.secretKey),
    pathStyle: Option.getOrUndefined(flags.pathStyle),
    tempDir: Option.getOrUndefined(flags.tempDir),
    workers: Option.getOrUndefined(flags.workers),
    receiverThreads: Option.getOrUndefined(flags.receiverThreads),
    storerThreads: Option.getOrUndefined(flags.storerThreads)
  })
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
    `memory budget:     ${s.memoryBudget / 1024 / 1024} MiB`,
    `target:            s3://${s.bucket} at ${s.s3Url ?? `AWS (${s.region})`}`,
    "",
    ""
  ].join("\n")
