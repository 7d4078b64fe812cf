/**
 * The services of a conversion, built from the resolved config: the source (FileStorage, or RelStorage
 * on a pool of its own), the destination writer on its pool, the S3 store when the destination has
 * one, and Stats. A server that cannot be reached is a setup problem (exit 2), named without secrets.
 */
import { Effect, Layer, Redacted } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { defaultPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import { DatabaseUnavailable, describeCause, SettingsError } from "../domain/Errors.ts"
import * as ConnInfo from "../domain/ConnInfo.ts"
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

/**
 * A DSN of the config (libpq's keyword form or a URL; "" for the environment alone), checked by libpq's
 * rules with the PG* variables as defaults: a bad one is a setting error naming the role, not the value.
 */
export const checkedDsn = (role: "source" | "destination", dsn: Redacted.Redacted<string>, env: ConnectionOptions["env"]) =>
  Effect.try({
    try: () => {
      ConnInfo.validate(Redacted.value(dsn), env)
      return dsn
    },
    catch: (e) =>
      new SettingsError({
        setting: `the ${role}'s dsn`,
        problem: e instanceof ConnInfo.ConnInfoError ? e.problem : String(e)
      })
  })

/** A pool on `dsn`, checked at once: a refused connection or password is exit 2, not a failed run. */
const pool = (dsn: Redacted.Redacted<string>, connections: number, env: ConnectionOptions["env"]) => {
  const where = describeUrl(dsn, env)
  const client = PgSession.layer(dsn, { maxConnections: connections, applicationName: "zodb-convert", env })
  return Layer.effectDiscard(checkConnection(where)).pipe(
    Layer.provideMerge(client),
    Layer.catchTag("SqlError", (error: SqlError.SqlError) =>
      Layer.effectDiscard(Effect.fail(new DatabaseUnavailable({ problem: `cannot connect to ${where}: ${describeCause(error)}` }))) as never)
  ) as Layer.Layer<SqlClient.SqlClient, DatabaseUnavailable>
}

export const layer = (config: Resolved, options: ConnectionOptions) =>
  Effect.gen(function*() {
    const policy = defaultPolicy(options.retries)
    const destDsn = yield* checkedDsn("destination", config.destination.dsn, options.env)
    // zodb-pgjsonb keeps one pool slot for its watermark; the writers take the rest
    const destination = PgJsonbWriter.layer({ historyPreserving: config.destination.historyPreserving }).pipe(
      Layer.provide(pool(destDsn, options.workers + 2, options.env))
    )
    const from = config.source
    const source = from.kind === "filestorage"
      ? FileStorageSource.layer({ path: from.path, blobDir: from.blobDir })
      : yield* Effect.map(checkedDsn("source", from.dsn, options.env), (dsn) =>
        RelStorageReader.layer({
          describe: `RelStorage ${describeUrl(dsn, options.env)}`,
          keepHistory: from.keepHistory,
          policy,
          tempDir: options.tempDir,
          inMemMax: 32 * 1024 * 1024
        }).pipe(Layer.provide(pool(dsn, options.workers + 2, options.env))))
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

