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
import type { DatabaseUnavailable, SettingsError } from "../domain/Errors.ts"
import * as ConvertConfig from "./ConvertConfig.ts"
import type { CodecMode } from "./codec/RecordCodec.ts"
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
  readonly incremental?: boolean | undefined
  readonly strict?: boolean | undefined
  readonly mode?: CodecMode | undefined
  readonly stopping?: ZodbConvert.ConvertOptions["stopping"]
  readonly onProgress?: ZodbConvert.ConvertOptions["onProgress"]
  readonly progressEvery?: ZodbConvert.ConvertOptions["progressEvery"]
}

export type CopyError = Effect.Error<ReturnType<typeof ZodbConvert.run>> | ZodbConvert.ConvertFailed | ZodbConvert.ConvertStopped |
  DatabaseUnavailable | SettingsError | Effect.Error<Layer.Error<ReturnType<typeof ZodbConnections.all>>>

export class ZodbConversion extends Context.Service<ZodbConversion, {
  readonly source: ConvertConfig.Source
  readonly destination: ConvertConfig.Destination
  /** the whole copy; a copy with failures or stopped by `stopping` fails (ConvertFailed, ConvertStopped) */
  readonly copy: (options?: CopyOptions) => Effect.Effect<ZodbConvert.ConvertProgress, CopyError>
  /** the same copy, returning its progress whatever happened to its transactions (the CLI reports it) */
  readonly copyReport: (options?: CopyOptions) => Effect.Effect<ZodbConvert.ConvertProgress, Exclude<CopyError, ZodbConvert.ConvertFailed | ZodbConvert.ConvertStopped>>
  /** reads and decodes the source as the copy would; writes nothing */
  readonly dryRun: (options?: { readonly mode?: CodecMode | undefined }) => Effect.Effect<ZodbConvert.DryRun, Effect.Error<ReturnType<typeof ZodbConvert.dryRun>> | SettingsError | DatabaseUnavailable>
}>()("lo-migrate/zodb/ZodbConversion") {
  static readonly make = (options: ConversionOptions): ZodbConversion["Service"] => {
    const connections = (workers: number) =>
      ZodbConnections.layer({ source: options.source, destination: options.destination, ignored: [] }, {
        workers,
        retries: options.retries ?? 10,
        tempDir: options.tempDir ?? NodeOs.tmpdir(),
        env: options.env ?? process.env
      })
    const copyReport = (copy: CopyOptions = {}) =>
      Effect.gen(function*() {
        const workers = Math.max(1, copy.workers ?? 4)
        const layers = yield* connections(workers)
        return yield* ZodbConvert.run({
          workers,
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
