/**
 * zodb-convert as a service for Effect programs, as the guide's Python API is for Python ones
 * (`dest.copyTransactionsFrom(source, workers=4)`): a layer from the source and destination (or from a
 * config file), and `copy` with workers, resume and the codec's form from code.
 *
 * ```ts
 * const program = Effect.gen(function*() {
 *   const conversion = yield* ZodbConversion
 *   const done = yield* conversion.copy({ workers: 4, incremental: true })
 *   yield* Effect.log(`${done.committed} transactions, ${done.records} records`)
 * }).pipe(Effect.provide(ZodbConversion.fromConfigFile({ configFile: "migrate.cfg" })))
 * ```
 */
import { Context, Effect, Layer } from "effect"
import * as NodeOs from "node:os"
import { defaultPolicy } from "../core/Retry.ts"
import { type DatabaseUnavailable, type ManifestError, type MigrationLocked, SettingsError, type StoreUnavailable } from "../domain/Errors.ts"
import type { StoreError } from "../domain/Errors.ts"
import type { Watch } from "../pipeline/TaskProgress.ts"
import * as ZodbUploadBlobs from "./ZodbUploadBlobs.ts"
import * as ZodbVerify from "./ZodbVerify.ts"
import * as ConvertConfig from "./ConvertConfig.ts"
import type { CodecMode } from "./codec/RecordCodec.ts"
import type { LockTakenOver } from "./destination/DestinationLock.ts"
import type { ZConfigError } from "./ZConfig.ts"
import * as ZodbConnections from "./ZodbConnections.ts"
import * as ZodbConvert from "./ZodbConvert.ts"

export interface ConversionOptions {
  readonly source: ConvertConfig.Source
  readonly destination: ConvertConfig.Destination
  /** attempts per S3 or PostgreSQL call (default 10) */
  readonly retries?: number | undefined
  /** where RelStorage blobs too large for memory are spooled (default the system's temp directory) */
  readonly tempDir?: string | undefined
  /** libpq's PG* variables for what the DSNs leave out (default process.env) */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

export interface CopyOptions {
  /** decoder and writer fibers each (default 4) */
  readonly workers?: number | undefined
  /** "inline" (default), "background" (uploads in their own pool), or "deferred" (staged, see `deferred`) */
  readonly blobMode?: "inline" | "background" | "deferred" | undefined
  /** deferred mode: the manifest and the staging directory (default: the manifest's name + ".staged") */
  readonly deferred?: { readonly manifest: string; readonly directory?: string | undefined } | undefined
  readonly incremental?: boolean | undefined
  readonly strict?: boolean | undefined
  readonly mode?: CodecMode | undefined
  readonly stopping?: ZodbConvert.ConvertOptions["stopping"]
  readonly onProgress?: ZodbConvert.ConvertOptions["onProgress"]
  readonly progressEvery?: ZodbConvert.ConvertOptions["progressEvery"]
}

export type CopyError = Effect.Error<ReturnType<typeof ZodbConvert.run>> | ZodbConvert.ConvertFailed | ZodbConvert.ConvertStopped | LockTakenOver |
  DatabaseUnavailable | SettingsError | Effect.Error<Layer.Error<ReturnType<typeof ZodbConnections.all>>>

export class ZodbConversion extends Context.Service<ZodbConversion, {
  readonly source: ConvertConfig.Source
  readonly destination: ConvertConfig.Destination
  /** the whole copy; a copy with failures or stopped by `stopping` fails (ConvertFailed, ConvertStopped) */
  readonly copy: (options?: CopyOptions) => Effect.Effect<ZodbConvert.ConvertProgress, CopyError>
  /** the same copy, returning its progress whatever happened to its transactions (the CLI reports it) */
  readonly copyReport: (options?: CopyOptions) => Effect.Effect<ZodbConvert.ConvertProgress, Exclude<CopyError, ZodbConvert.ConvertFailed | ZodbConvert.ConvertStopped | LockTakenOver>>
  /**
   * The deferred mode's second step: uploads what the manifest lists, records each blob, deletes each
   * staged file once recorded; `s3` overrides the destination's S3 settings (or gives them)
   */
  readonly uploadBlobs: (options: {
    readonly manifest: string
    readonly concurrency?: number | undefined
    readonly s3?: { readonly [K in keyof ConvertConfig.S3Settings]?: ConvertConfig.S3Settings[K] | undefined } | undefined
    readonly onLine?: ((report: ZodbUploadBlobs.UploadReport) => Effect.Effect<void>) | undefined
    /** runs the upload with its progress shown (TaskProgress) */
    readonly watch?: Watch | undefined
    /** count the manifest's lines first, for the progress's total (default true) */
    readonly count?: boolean | undefined
  }) => Effect.Effect<
    ZodbUploadBlobs.UploadReport,
    | ZodbUploadBlobs.UploadIncomplete
    | ManifestError
    | StoreError
    | StoreUnavailable
    | SettingsError
    | DatabaseUnavailable
    | MigrationLocked
    | Effect.Error<ReturnType<typeof ZodbUploadBlobs.run>>
  >
  /** compares the destination with the source (ZodbVerify.ts): read-only; the report names each difference */
  readonly verify: (options?: {
    readonly sample?: number | undefined
    readonly seed?: number | undefined
    readonly deep?: boolean | undefined
    readonly mode?: CodecMode | undefined
    readonly concurrency?: number | undefined
  }) => Effect.Effect<ZodbVerify.VerifyReport, Effect.Error<ReturnType<typeof ZodbVerify.run>> | SettingsError | DatabaseUnavailable | StoreUnavailable | ManifestError>
  /** reads and decodes the source as the copy would; writes nothing */
  readonly dryRun: (options?: { readonly mode?: CodecMode | undefined }) => Effect.Effect<ZodbConvert.DryRun, Effect.Error<ReturnType<typeof ZodbConvert.dryRun>> | SettingsError | DatabaseUnavailable>
}>()("lo-migrate/zodb/ZodbConversion") {
  static readonly make = (options: ConversionOptions): ZodbConversion["Service"] => {
    const connections = (workers: number, deferred?: CopyOptions["deferred"]) =>
      ZodbConnections.layer({ source: options.source, destination: options.destination, ignored: [] }, {
        workers,
        deferred: deferred === undefined ? undefined : { manifest: deferred.manifest, directory: deferred.directory ?? `${deferred.manifest}.staged` },
        retries: options.retries ?? 10,
        tempDir: options.tempDir ?? NodeOs.tmpdir(),
        env: options.env ?? process.env
      })
    const copyReport = (copy: CopyOptions = {}) =>
      Effect.gen(function*() {
        const workers = Math.max(1, copy.workers ?? 4)
        const blobMode = copy.blobMode ?? (copy.deferred !== undefined ? "deferred" : "inline")
        if (blobMode === "deferred" && copy.deferred === undefined) {
          return yield* new SettingsError({ setting: "blobMode", problem: "deferred needs a manifest (deferred.manifest)" })
        }
        const layers = yield* connections(workers, blobMode === "deferred" ? copy.deferred : undefined)
        return yield* ZodbConvert.run({
          workers,
          blobMode,
          incremental: copy.incremental ?? false,
          blobThreshold: options.destination.blobThreshold,
          s3Prefix: options.destination.s3?.prefix,
          mode: copy.mode,
          strict: copy.strict,
          retry: defaultPolicy(options.retries ?? 10),
          stopping: copy.stopping,
          onProgress: copy.onProgress,
          progressEvery: copy.progressEvery
        }).pipe(Effect.provide(ZodbConnections.all(layers)), Effect.scoped)
      })
    return {
      source: options.source,
      destination: options.destination,
      copyReport,
      copy: (copy) => Effect.flatMap(copyReport(copy), ZodbConvert.outcome),
      uploadBlobs: (upload) => uploadStaged(options, upload),
      verify: (verify = {}) =>
        Effect.gen(function*() {
          const concurrency = Math.max(1, verify.concurrency ?? 4)
          const layers = yield* ZodbConnections.verifyLayers({ source: options.source, destination: options.destination, ignored: [] }, {
            workers: concurrency,
            retries: options.retries ?? 10,
            tempDir: options.tempDir ?? NodeOs.tmpdir(),
            env: options.env ?? process.env
          })
          return yield* ZodbVerify.run({
            historyPreserving: options.destination.historyPreserving,
            s3Prefix: options.destination.s3?.prefix,
            sample: verify.sample,
            seed: verify.seed,
            deep: verify.deep,
            mode: verify.mode,
            concurrency,
            retry: defaultPolicy(options.retries ?? 10)
          }).pipe(Effect.provide(ZodbConnections.allForVerify(layers)), Effect.scoped)
        }),
      dryRun: (dry = {}) =>
        Effect.gen(function*() {
          const layers = yield* connections(1)
          return yield* ZodbConvert.dryRun({
            blobThreshold: options.destination.blobThreshold,
            toS3: options.destination.s3 !== undefined,
            mode: dry.mode
          }).pipe(Effect.provide(layers.source.pipe(Layer.provide(layers.stats))))
        })
    }
  }

  static readonly layer = (options: ConversionOptions): Layer.Layer<ZodbConversion> =>
    Layer.succeed(ZodbConversion, ZodbConversion.make(options))

  /** The source and destination of a zodb-convert config file (or zope.conf files), as the CLI reads them. */
  static readonly fromConfigFile = (
    load: ConvertConfig.LoadOptions,
    options: Omit<ConversionOptions, "source" | "destination"> = {}
  ): Layer.Layer<ZodbConversion, ZConfigError> =>
    Layer.effect(
      ZodbConversion,
      Effect.map(ConvertConfig.load(load), (config) => ZodbConversion.make({ ...options, source: config.source, destination: config.destination }))
    )
}

/** The deferred mode's second step, for a destination alone (no source is needed). */
export const uploadStaged = (
  options: Omit<ConversionOptions, "source">,
  upload: Parameters<ZodbConversion["Service"]["uploadBlobs"]>[0]
) =>
    Effect.gen(function*() {
      const base = options.destination.s3
      const s3 = { ...(base ?? {}), ...Object.fromEntries(Object.entries(upload.s3 ?? {}).filter(([, v]) => v !== undefined)) } as Partial<ConvertConfig.S3Settings>
      if (s3.bucket === undefined) {
        return yield* new SettingsError({ setting: "--s3-bucket", problem: "no S3 bucket: give --s3-bucket (and endpoint, keys) or a destination with s3-bucket-name" })
      }
      const full: ConvertConfig.S3Settings = {
        bucket: s3.bucket,
        prefix: s3.prefix ?? "",
        endpointUrl: s3.endpointUrl,
        region: s3.region,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        useSsl: s3.useSsl ?? true
      }
      const concurrency = Math.max(1, upload.concurrency ?? 8)
      const layer = yield* ZodbConnections.uploadLayer(options.destination, full, {
        workers: concurrency,
        retries: options.retries ?? 10,
        env: options.env ?? process.env
      })
      const report = yield* ZodbUploadBlobs.run({
        manifest: upload.manifest,
        concurrency,
        retry: defaultPolicy(options.retries ?? 10),
        onLine: upload.onLine,
        watch: upload.watch,
        count: upload.count
      }).pipe(Effect.provide(layer), Effect.scoped)
      if (report.failed.length > 0 || report.waiting > 0) return yield* new ZodbUploadBlobs.UploadIncomplete({ report })
      return report
    })
