/**
 * The library API of lo-migrate.
 *
 * ```ts
 * import { Migration } from "lo-migrate"
 * const program = Effect.gen(function*() {
 *   const migration = yield* Migration
 *   return yield* migration.run
 * }).pipe(Effect.provide(Migration.layer({ pgUrl, s3Url, bucket, accessKey, secretKey })))
 * ```
 *
 * The building blocks (stages, sources, the S3 store, Stats, displays) are exported as modules for
 * applications that compose a pipeline of their own.
 */
export {
  Migration,
  type MigrationOptions,
  type RunOptions,
  type Summary
} from "./migrate/Migration.ts"
/** The run as a function of Settings (`run`, `layer`, `provideTo`), as the CLI uses it. */
export * as MigrationRun from "./migrate/Migration.ts"

// domain
export * from "./domain/Errors.ts"
export type { Candidate, Digests, FailureReason, Received, RowFailure, Stored } from "./domain/LargeObject.ts"
export * as LargeObject from "./domain/LargeObject.ts"
export * as Recorded from "./domain/Recorded.ts"
export { defaults, type Settings, type SettingsInput, validate as validateSettings } from "./domain/Settings.ts"

// pipeline
export type { Finished, ProgressEvent, RowFailed, Snapshot, Started } from "./pipeline/Events.ts"
export * as Events from "./pipeline/Events.ts"
export { Stats, type StatsSnapshot } from "./core/Stats.ts"
export { Failures } from "./pipeline/Failures.ts"
export * as Display from "./pipeline/Display.ts"
export * as Monitor from "./pipeline/Monitor.ts"
export * as ProgressDisplay from "./pipeline/ProgressDisplay.ts"
export * as Pipeline from "./migrate/Pipeline.ts"
export * as Stage from "./pipeline/Stage.ts"
export * as Observer from "./migrate/Observer.ts"
export * as Receiver from "./migrate/Receiver.ts"
export * as Payload from "./core/Payload.ts"
export * as Retry from "./core/Retry.ts"

// sources and stores
export { AfterCopy } from "./phases/AfterCopy.ts"
export { CopySource } from "./phases/CopySource.ts"
export { PlanSource } from "./phases/PlanSource.ts"
export * as ProfileServices from "./phases/ProfileServices.ts"
export * as Statement from "./postgres/Statement.ts"
export * as Nice2 from "./profiles/nice2/Nice2.ts"
export * as LargeObjects from "./postgres/LargeObjects.ts"
export { ObjectStore, type ObjectInfo, type PutRequest } from "./s3/ObjectStore.ts"
export * as S3Store from "./s3/S3Store.ts"

// zodb-convert: a whole ZODB into zodb-pgjsonb (docs/zodb-convert.md)
export { ZodbConversion, type ConversionOptions, type CopyOptions } from "./zodb/ZodbConversion.ts"
export * as ZodbConvert from "./zodb/ZodbConvert.ts"
export * as ZodbVerify from "./zodb/ZodbVerify.ts"
export * as ZodbUploadBlobs from "./zodb/ZodbUploadBlobs.ts"
export * as ZodbConvertConfig from "./zodb/ConvertConfig.ts"
export * as ZodbCodec from "./zodb/codec/RecordCodec.ts"

// observability
export * as Metrics from "./observability/Metrics.ts"
export * as Tracing from "./observability/Tracing.ts"
