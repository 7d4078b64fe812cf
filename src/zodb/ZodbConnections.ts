/**
 * The services of a conversion, built from the resolved config: the source (FileStorage, or RelStorage
 * on a pool of its own), the destination writer on its pool, the S3 store when the destination has
 * one, and Stats. A server that cannot be reached is a setup problem (exit 2), named without secrets.
 */
import { Effect, Layer, Redacted } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { defaultPolicy, type RetryPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import { type DatabaseUnavailable, type ManifestError, SettingsError, type StoreUnavailable } from "../domain/Errors.ts"
import * as ConnInfo from "../domain/ConnInfo.ts"
import * as PgSession from "../postgres/PgSession.ts"
import { checkConnection, describeUrl, unreachable } from "../postgres/Statement.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import * as S3Store from "../s3/S3Store.ts"
import * as StagingStore from "../s3/StagingStore.ts"
import type { Destination, Resolved, S3Settings } from "./ConvertConfig.ts"
import { DestinationLock } from "./destination/DestinationLock.ts"
import { PgJsonbWriter } from "./destination/PgJsonbWriter.ts"
import * as FileStorageSource from "./sources/FileStorageSource.ts"
import * as RelStorageReader from "./sources/RelStorageReader.ts"

export interface ConnectionOptions {
  readonly workers: number
  /** deferred blobs: S3-bound blobs go to this manifest and staging directory instead of S3 */
  readonly deferred?: { readonly manifest: string; readonly directory: string } | undefined
  readonly retries: number
  readonly tempDir: string
  readonly env: Readonly<Record<string, string | undefined>>
}

/**
 * A DSN of the config (libpq's keyword form or a URL; "" for the environment alone), checked by libpq's
 * rules with the PG* variables as defaults: a bad one is a setting error naming the role, not the value.
 */
export const checkedDsn = (
  role: "source" | "destination",
  dsn: Redacted.Redacted<string>,
  env: ConnectionOptions["env"],
  setting: string | undefined = undefined
) =>
  Effect.try({
    try: () => {
      ConnInfo.validate(Redacted.value(dsn), env)
      return dsn
    },
    catch: (e) =>
      new SettingsError({
        setting: setting ?? `the ${role}'s dsn`,
        problem: e instanceof ConnInfo.ConnInfoError ? e.problem : String(e),
        fix: "give libpq's key=value form (dbname=zodb host=db user=zodb) or a postgresql://user@host:port/dbname URI (docs/connections.md)"
      })
  })

/**
 * A pool on `dsn`, checked at once: a refused connection or password is exit 2, not a failed run.
 * `readOnly`: every session starts with default_transaction_read_only (verify: the server refuses writes).
 * `setting`: where the dsn is set, for the message.
 */
const pool = (dsn: Redacted.Redacted<string>, connections: number, env: ConnectionOptions["env"], setting: string, readOnly = false) => {
  const where = describeUrl(dsn, env)
  const client = PgSession.layer(dsn, { maxConnections: connections, applicationName: "zodb-convert", env, readOnly })
  return Layer.effectDiscard(checkConnection(where, setting)).pipe(
    Layer.provideMerge(client),
    Layer.catchTag("SqlError", (error: SqlError.SqlError) => Layer.effectDiscard(Effect.fail(unreachable(where, setting, error))) as never)
  ) as Layer.Layer<SqlClient.SqlClient, DatabaseUnavailable>
}

/** The destination's dsn setting, for messages (a library caller's config has no file). */
const destSetting = (destination: Destination) => destination.dsnSetting ?? "the destination's dsn"

export const layer = (config: Resolved, options: ConnectionOptions) =>
  Effect.gen(function*() {
    const policy = defaultPolicy(options.retries)
    const destDsn = yield* checkedDsn("destination", config.destination.dsn, options.env, config.destination.dsnSetting)
    // zodb-pgjsonb keeps one pool slot for its watermark; the writers take the rest
    // the run lock first: nothing is looked at or created while another run writes there
    const destination = PgJsonbWriter.layer({ historyPreserving: config.destination.historyPreserving }).pipe(
      Layer.provideMerge(DestinationLock.layer({ retry: policy })),
      Layer.provide(pool(destDsn, options.workers + 3, options.env, destSetting(config.destination)))
    )
    const from = config.source
    const source = from.kind === "filestorage"
      ? FileStorageSource.layer({ path: from.path, blobDir: from.blobDir })
      : yield* Effect.map(checkedDsn("source", from.dsn, options.env, from.dsnSetting), (dsn) =>
        RelStorageReader.layer({
          describe: `RelStorage ${describeUrl(dsn, options.env)}`,
          keepHistory: from.keepHistory,
          policy,
          tempDir: options.tempDir,
          inMemMax: 32 * 1024 * 1024
        }).pipe(Layer.provide(pool(dsn, options.workers + 2, options.env, from.dsnSetting ?? "the source's dsn"))))
    const s3 = config.destination.s3
    if (options.deferred !== undefined && s3 === undefined) {
      return yield* new SettingsError({
        setting: "--deferred-blobs",
        problem: "the destination has no S3 settings (s3-bucket-name …): without S3 every blob is stored inline, nothing would be deferred",
        fix: "add s3-bucket-name (with s3-endpoint-url and the keys) to <pgjsonb destination>, or leave out --deferred-blobs"
      })
    }
    const store = s3 === undefined
      ? Layer.empty
      : options.deferred !== undefined
      ? StagingStore.layer(options.deferred)
      : storeOf(s3, options.workers * 2 + 2, policy)
    return { source, destination, store: store as Layer.Layer<ObjectStore, StoreUnavailable | ManifestError, Stats>, stats: Stats.layer }
  })

/** The S3 store of the destination's settings, for `connections` requests at once. */
export const storeOf = (s3: S3Settings, connections: number, policy: RetryPolicy) =>
  S3Store.layer({
    endpoint: s3.endpointUrl,
    region: s3.region ?? "us-east-1",
    bucket: s3.bucket,
    pathStyle: s3.endpointUrl !== undefined,
    accessKey: s3.accessKey,
    secretKey: s3.secretKey,
    partSize: 16 * 1024 * 1024,
    partConcurrency: 2,
    connections,
    retry: policy,
    settingNames: {
      bucket: "s3-bucket-name in <pgjsonb>",
      endpoint: "s3-endpoint-url in <pgjsonb>",
      keys: "s3-access-key and s3-secret-key in <pgjsonb>"
    }
  })

/** --upload-blobs: the destination's pool (read and record blob_state) and its S3 store. */
export const uploadLayer = (destination: Destination, s3: S3Settings, options: Omit<ConnectionOptions, "deferred" | "tempDir">) =>
  Effect.gen(function*() {
    const dsn = yield* checkedDsn("destination", destination.dsn, options.env, destination.dsnSetting)
    const database = DestinationLock.layer({ retry: defaultPolicy(options.retries) }).pipe(
      Layer.provideMerge(pool(dsn, options.workers + 2, options.env, destSetting(destination)))
    )
    return Layer.mergeAll(database, storeOf(s3, options.workers * 2 + 2, defaultPolicy(options.retries))).pipe(
      Layer.provideMerge(Stats.layer)
    )
  })

/** Every service of a copy as one layer. */
export const all = (layers: Effect.Success<ReturnType<typeof layer>>) =>
  Layer.mergeAll(layers.source, layers.destination, layers.store).pipe(Layer.provideMerge(layers.stats))


/**
 * What `--verify` needs: the source, the destination's pool (read-only sessions, and no PgJsonbWriter:
 * nothing is created or checked by writing), the S3 store when the destination has one, and Stats.
 */
export const verifyLayers = (config: Resolved, options: ConnectionOptions) =>
  Effect.gen(function*() {
    const layers = yield* layer(config, options)
    const dsn = yield* checkedDsn("destination", config.destination.dsn, options.env, config.destination.dsnSetting)
    return { ...layers, destination: pool(dsn, options.workers + 1, options.env, destSetting(config.destination), true) }
  })

/** Every service of a verification as one layer (the destination's SqlClient, not a writer). */
export const allForVerify = (layers: Effect.Success<ReturnType<typeof verifyLayers>>) =>
  Layer.mergeAll(layers.source, layers.destination, layers.store).pipe(Layer.provideMerge(layers.stats))
