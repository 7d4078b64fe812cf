/**
 * The services of a conversion, built from the resolved config: the source (FileStorage, or RelStorage
 * on a pool of its own), the destination writer on its pool, the S3 store when the destination has
 * one, and Stats. A server that cannot be reached is a setup problem (exit 2), named without secrets.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { defaultPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import { DatabaseUnavailable, describeCause, SettingsError } from "../domain/Errors.ts"
import { ConnectionStringError, toUrl } from "../postgres/ConnectionString.ts"
import * as PgSession from "../postgres/PgSession.ts"
import { checkConnection, describeUrl } from "../postgres/Statement.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import * as S3Store from "../s3/S3Store.ts"
import type { Resolved } from "./ConvertConfig.ts"
import { PgJsonbWriter } from "./destination/PgJsonbWriter.ts"
import * as FileStorageSource from "./sources/FileStorageSource.ts"
import * as RelStorageReader from "./sources/RelStorageReader.ts"

export interface ConnectionOptions {
  readonly workers: number
  readonly retries: number
  readonly tempDir: string
  readonly env: Readonly<Record<string, string | undefined>>
}

/** A DSN of the config as a URL (libpq's keyword form or a URL, PG* variables as defaults). */
export const urlOf = (role: "source" | "destination", dsn: Redacted.Redacted<string>, env: ConnectionOptions["env"]) =>
  Effect.try({
    try: () => Redacted.make(toUrl(Redacted.value(dsn), env)),
    catch: (e) =>
      new SettingsError({
        setting: `the ${role}'s dsn`,
        problem: e instanceof ConnectionStringError ? e.problem : String(e)
      })
  })

/**
 * A pool on `url`, checked at once: a refused connection or password is exit 2, not a failed run.
 * `readOnly`: every session starts with default_transaction_read_only (verify: the server refuses writes).
 */
const pool = (url: Redacted.Redacted<string>, connections: number, readOnly = false) => {
  const where = describeUrl(Redacted.value(url))
  const config = PgSession.poolConfig(url, { maxConnections: connections })
  const client = PgClient.layer(
    readOnly ? { ...config, startupParameters: { ...config.startupParameters, default_transaction_read_only: "on" } } : config
  )
  return Layer.effectDiscard(checkConnection(where)).pipe(
    Layer.provideMerge(client),
    Layer.catchTag("SqlError", (error: SqlError.SqlError) =>
      Layer.effectDiscard(Effect.fail(new DatabaseUnavailable({ problem: `cannot connect to ${where}: ${describeCause(error)}` }))) as never)
  ) as Layer.Layer<SqlClient.SqlClient, DatabaseUnavailable>
}

export const layer = (config: Resolved, options: ConnectionOptions) =>
  Effect.gen(function*() {
    const policy = defaultPolicy(options.retries)
    const destUrl = yield* urlOf("destination", config.destination.dsn, options.env)
    // zodb-pgjsonb keeps one pool slot for its watermark; the writers take the rest
    const destination = PgJsonbWriter.layer({ historyPreserving: config.destination.historyPreserving }).pipe(
      Layer.provide(pool(destUrl, options.workers + 2))
    )
    const source = config.source.kind === "filestorage"
      ? FileStorageSource.layer({ path: config.source.path, blobDir: config.source.blobDir })
      : RelStorageReader.layer({
        describe: `RelStorage ${describeUrl(Redacted.value(yield* urlOf("source", config.source.dsn, options.env)))}`,
        keepHistory: config.source.keepHistory,
        policy,
        tempDir: options.tempDir,
        inMemMax: 32 * 1024 * 1024
      }).pipe(Layer.provide(pool(yield* urlOf("source", config.source.dsn, options.env), options.workers + 2)))
    const s3 = config.destination.s3
    const store = s3 === undefined
      ? Layer.empty
      : S3Store.layer({
        endpoint: s3.endpointUrl,
        region: s3.region ?? "us-east-1",
        bucket: s3.bucket,
        pathStyle: s3.endpointUrl !== undefined,
        accessKey: s3.accessKey,
        secretKey: s3.secretKey,
        partSize: 16 * 1024 * 1024,
        partConcurrency: 2,
        connections: options.workers * 2 + 2,
        retry: policy
      })
    return { source, destination, store: store as Layer.Layer<ObjectStore>, stats: Stats.layer }
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
    const destUrl = yield* urlOf("destination", config.destination.dsn, options.env)
    return { ...layers, destination: pool(destUrl, options.workers + 1, true) }
  })

/** Every service of a verification as one layer (the destination's SqlClient, not a writer). */
export const allForVerify = (layers: Effect.Success<ReturnType<typeof verifyLayers>>) =>
  Layer.mergeAll(layers.source, layers.destination, layers.store).pipe(Layer.provideMerge(layers.stats))
