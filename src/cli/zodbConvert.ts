/**
 * `zodb-convert` (also `lo-migrate zodb-convert`): a whole ZODB (FileStorage or RelStorage) into
 * zodb-pgjsonb, with the interface of the Python zodb-convert and its guide (docs/zodb-convert.md).
 */
import { Config, Console, Effect, Option, Ref, References } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as NodeOs from "node:os"
import { writeStderr, writeStdout } from "../core/Output.ts"
import { StopRequest } from "../core/StopRequest.ts"
import { SettingsError } from "../domain/Errors.ts"
import * as ConvertConfig from "../zodb/ConvertConfig.ts"
import * as ConvertDisplay from "../zodb/ConvertDisplay.ts"
import { uploadStaged, ZodbConversion } from "../zodb/ZodbConversion.ts"
import * as ZodbConvert from "../zodb/ZodbConvert.ts"
import { described, int } from "./Flags.ts"
import * as ProgressMode from "./ProgressMode.ts"
import { verifyCommand, verifyFlags } from "./zodbVerify.ts"

const flags = {
  config: Argument.String("config").pipe(
    Argument.withDescription("ZConfig file with a <source> and a <destination> section (see docs/zodb-convert.md)"),
    Argument.optional
  ),
  sourceZopeConf: Flag.String("source-zope-conf").pipe(
    Flag.withDescription("take the source from the <zodb_db> section of this zope.conf"),
    Flag.optional
  ),
  sourceDb: Flag.String("source-db").pipe(Flag.withDescription(described("the <zodb_db NAME> of --source-zope-conf", { default: "main" })), Flag.optional),
  destZopeConf: Flag.String("dest-zope-conf").pipe(
    Flag.withDescription("take the destination from the <zodb_db> section of this zope.conf"),
    Flag.optional
  ),
  destDb: Flag.String("dest-db").pipe(Flag.withDescription(described("the <zodb_db NAME> of --dest-zope-conf", { default: "main" })), Flag.optional),
  workers: int("workers", "decoder and writer fibers each (the destination pool gets workers + 2 connections)", 4).pipe(Flag.withAlias("w")),
  incremental: Flag.Boolean("incremental").pipe(
    Flag.withDescription("resume an interrupted copy at its watermark, or copy what the source has gained since a finished one"),
    Flag.withDefault(false)
  ),
  dryRun: Flag.Boolean("dry-run").pipe(
    Flag.withDescription("read and decode everything, count what would go where, write nothing"),
    Flag.withDefault(false)
  ),
  strict: Flag.Boolean("strict").pipe(
    Flag.withDescription("leave out (and fail on) transactions with records whose JSON would lose information"),
    Flag.withDefault(false)
  ),
  codecForm: Flag.Literals("codec-form", ["faithful", "codec"] as const).pipe(
    Flag.withDescription(described(
      "faithful: where zodb-json-codec loses information, the form zodb-pgjsonb's loader reverses; codec: its output exactly",
      { default: "faithful" }
    )),
    Flag.withDefault("faithful" as const)
  ),
  progress: Flag.Literals("progress", ProgressMode.modes).pipe(
    Flag.withDescription(described("how progress is shown: tty, plain lines, or JSON lines on stdout", { default: "auto" })),
    Flag.withDefault("auto" as const)
  ),
  interval: int("interval", "seconds between progress lines", 10).pipe(Flag.withAlias("i")),
  retries: int("retries", "attempts per S3 or PostgreSQL call before it counts as failed", 10),
  backgroundBlobs: Flag.Boolean("background-blobs").pipe(
    Flag.withDescription("upload blobs to S3 in their own pool: PostgreSQL writes never wait for S3; a transaction counts as copied once its uploads are confirmed"),
    Flag.withDefault(false)
  ),
  deferredBlobs: Flag.String("deferred-blobs").pipe(
    Flag.withDescription("no S3 during the copy: stage the S3-bound blobs (file, then manifest line, each fsync'd) for --upload-blobs MANIFEST"),
    Flag.optional
  ),
  stagingDir: Flag.String("staging-dir").pipe(
    Flag.withDescription(described("where --deferred-blobs stages the blob files", { default: "MANIFEST.staged" })),
    Flag.optional
  ),
  uploadBlobs: Flag.String("upload-blobs").pipe(
    Flag.withDescription("upload what a --deferred-blobs copy staged, record each blob, delete each staged file once recorded; rerun until done"),
    Flag.optional
  ),
  s3Bucket: Flag.String("s3-bucket").pipe(Flag.withDescription("--upload-blobs: the bucket (default: the destination's s3-bucket-name)"), Flag.optional),
  s3EndpointUrl: Flag.String("s3-endpoint-url").pipe(Flag.withDescription("--upload-blobs: the S3 endpoint (default: the destination's)"), Flag.optional),
  s3Region: Flag.String("s3-region").pipe(Flag.withDescription("--upload-blobs: the S3 region (default: the destination's)"), Flag.optional),
  s3AccessKey: Flag.Redacted("s3-access-key").pipe(Flag.withDescription(described("--upload-blobs: the S3 access key", { env: "AWS_ACCESS_KEY_ID" })), Flag.withFallbackConfig(Config.Redacted("AWS_ACCESS_KEY_ID")), Flag.optional),
  s3SecretKey: Flag.Redacted("s3-secret-key").pipe(Flag.withDescription(described("--upload-blobs: the S3 secret key", { env: "AWS_SECRET_ACCESS_KEY" })), Flag.withFallbackConfig(Config.Redacted("AWS_SECRET_ACCESS_KEY")), Flag.optional),
  verbose: Flag.Boolean("verbose").pipe(Flag.withAlias("v"), Flag.withDescription("log each step (the same as LOG_LEVEL=debug)"), Flag.withDefault(false)),
  ...verifyFlags
}

type Flags = Command.Command.Config.Infer<typeof flags>

/** --upload-blobs MANIFEST: the destination (config file or --dest-zope-conf) and S3 (its settings or the flags). */
const uploadCommand = (f: Flags, manifest: string) =>
  Effect.gen(function*() {
    const config = yield* ConvertConfig.load({
      configFile: Option.getOrUndefined(f.config),
      destZopeConf: Option.getOrUndefined(f.destZopeConf),
      destDb: Option.getOrUndefined(f.destDb),
      needSource: false
    })
    yield* writeStderr(`zodb-convert: uploading what ${manifest} lists, ${f.workers} at a time\n`)
    const task = ProgressMode.task(f.progress, { task: "upload-blobs", unit: "lines", interval: `${f.interval} seconds` })
    const report = yield* uploadStaged({ destination: config.destination, retries: f.retries, env: process.env }, {
      manifest,
      concurrency: f.workers,
      watch: task.watch,
      s3: {
        bucket: Option.getOrUndefined(f.s3Bucket),
        endpointUrl: Option.getOrUndefined(f.s3EndpointUrl),
        region: Option.getOrUndefined(f.s3Region),
        accessKey: Option.getOrUndefined(f.s3AccessKey),
        secretKey: Option.getOrUndefined(f.s3SecretKey)
      }
    }).pipe(
      Effect.tapError((e) => e._tag === "UploadIncomplete" ? task.out(uploadLine(e.report)) : Effect.void)
    )
    yield* task.out(uploadLine(report))
  })

const uploadLine = (r: { readonly lines: number; readonly uploaded: number; readonly alreadyDone: number; readonly waiting: number; readonly failed: ReadonlyArray<unknown>; readonly bytes: number }) =>
  `upload-blobs: ${r.lines} line(s): ${r.uploaded} uploaded (${(r.bytes / 1048576).toFixed(1)} MiB), ${r.alreadyDone} already done, ` +
  `${r.waiting} waiting for their transaction, ${r.failed.length} failed`

const describeSource = (source: ConvertConfig.Source) =>
  source.kind === "filestorage"
    ? `FileStorage ${source.path}${source.blobDir === undefined ? "" : ` (blobs in ${source.blobDir})`}`
    : `RelStorage (${source.keepHistory ? "history-preserving" : "history-free"})`

const convert = Effect.fn("zodb-convert")(function*(f: Flags) {
  if (f.verify) return yield* verifyCommand(f)
  if (f.workers < 1) return yield* new SettingsError({ setting: "--workers", problem: "must be at least 1" })
  if (f.interval < 1) return yield* new SettingsError({ setting: "--interval", problem: "must be at least 1" })
  if (Option.isSome(f.uploadBlobs)) return yield* uploadCommand(f, f.uploadBlobs.value)
  if (f.backgroundBlobs && Option.isSome(f.deferredBlobs)) {
    return yield* new SettingsError({ setting: "--background-blobs", problem: "and --deferred-blobs exclude each other: choose one" })
  }
  const config = yield* ConvertConfig.load({
    configFile: Option.getOrUndefined(f.config),
    sourceZopeConf: Option.getOrUndefined(f.sourceZopeConf),
    sourceDb: Option.getOrUndefined(f.sourceDb),
    destZopeConf: Option.getOrUndefined(f.destZopeConf),
    destDb: Option.getOrUndefined(f.destDb)
  })
  for (const i of config.ignored) yield* Effect.logDebug(`${i.at.file ?? ""}:${i.at.line}: ${i.key} in <${i.section}> ignored: ${i.reason}`)
  const conversion = ZodbConversion.make({
    source: config.source,
    destination: config.destination,
    retries: f.retries,
    tempDir: NodeOs.tmpdir(),
    env: process.env
  })
  const dest = config.destination

  if (f.dryRun) {
    const report = yield* conversion.dryRun({ mode: f.codecForm })
    const estimate = report.records / Math.max(1, Math.min(report.decodeRate * f.workers, 10_000))
    yield* Console.log(
      [
        `dry run (nothing written): ${report.transactions} transactions, ${report.records} records ` +
        `(${report.noData} without data), ${(report.pickleBytes / 1048576).toFixed(1)} MiB of pickles`,
        `blobs: ${report.blobs} (${(report.blobBytes / 1048576).toFixed(1)} MiB): ${report.blobsToS3} to S3 ` +
        `(${(report.bytesToS3 / 1048576).toFixed(1)} MiB), ${report.blobsInline} inline (${(report.bytesInline / 1048576).toFixed(1)} MiB)`,
        `codec: ${report.undecodable.length} record(s) cannot be converted, ${report.losses} lose information in the codec's JSON`,
        ...report.undecodable.slice(0, 20).map((u) => `  UNDECODABLE ${ZodbConvert.describeFailure(u)}`),
        `read and decoded in ${report.seconds.toFixed(1)} s (${report.decodeRate.toFixed(0)} records/s on one fiber); ` +
        `estimated copy: about ${Math.ceil(estimate)} s of decoding with -w ${f.workers}, plus the writes and uploads`
      ].join("\n")
    )
    return
  }

  const mode = ProgressMode.resolve(f.progress, process.stderr.isTTY === true)
  yield* writeStderr(
    `zodb-convert: ${describeSource(config.source)} into zodb-pgjsonb (${dest.historyPreserving ? "history-preserving" : "history-free"}` +
      `${dest.s3 === undefined ? ", blobs inline" : `, blobs of ${dest.blobThreshold} bytes or more to s3://${dest.s3.bucket}`}` +
      `), -w ${f.workers}${f.incremental ? ", incremental" : ""}\n`
  )
  const stopRequest = yield* Effect.serviceOption(StopRequest)
  if (Option.isSome(stopRequest)) yield* stopRequest.value.enable
  const ticks = yield* Ref.make(0)
  const everyTicks = f.interval
  const onProgress = (p: ZodbConvert.ConvertProgress) =>
    Effect.gen(function*() {
      const n = yield* Ref.updateAndGet(ticks, (t) => t + 1)
      if (mode === "tty") return yield* writeStderr(`\r\x1b[2K${ConvertDisplay.line(p)}`)
      if (n % everyTicks !== 0) return
      if (mode === "json") return yield* writeStdout(ConvertDisplay.json(p, "progress"))
      yield* writeStderr(`${ConvertDisplay.line(p)}\n`)
    })
  const progress = yield* conversion.copyReport({
    workers: f.workers,
    blobMode: f.backgroundBlobs ? "background" : Option.isSome(f.deferredBlobs) ? "deferred" : "inline",
    deferred: Option.isSome(f.deferredBlobs) ? { manifest: f.deferredBlobs.value, directory: Option.getOrUndefined(f.stagingDir) } : undefined,
    incremental: f.incremental,
    mode: f.codecForm,
    strict: f.strict,
    stopping: Option.isSome(stopRequest) ? stopRequest.value.requested : undefined,
    onProgress
  })
  if (mode === "tty") yield* writeStderr("\n")
  if (mode === "json") yield* writeStdout(ConvertDisplay.json(progress, "summary"))
  for (const l of ConvertDisplay.summary(progress)) yield* writeStderr(`${l}\n`)
  yield* ZodbConvert.outcome(progress)
})

export const zodbConvert = Command.make("zodb-convert", flags, (f) =>
  f.verbose ? convert(f).pipe(Effect.provideService(References.MinimumLogLevel, "Debug")) : convert(f)).pipe(
  Command.withDescription(
    "Copy a whole ZODB (FileStorage or RelStorage) into zodb-pgjsonb: object states as JSONB, transactions, blobs inline or in S3; resumable"
  )
)
