/**
 * The connections every command builds from its settings: the PostgreSQL pool and the S3 store, sized
 * for the command's concurrency, and the service sets of plan, verify and prune (Migration.layer builds
 * its own set from the same two). A connection failure while building them is a setup problem.
 */
import { Effect, Layer, type Redacted } from "effect"
import type { SqlError } from "effect/sql"
import type { Profile } from "../domain/Profile.ts"
import type { Settings } from "../domain/Settings.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import * as Nice2 from "../profiles/nice2/Nice2.ts"
import * as Profiles from "../profiles/Profiles.ts"
import * as PgSession from "../postgres/PgSession.ts"
import { checkConnection, describeUrl, unreachable } from "../postgres/Statement.ts"
import * as S3Store from "../s3/S3Store.ts"

/**
 * The PostgreSQL pool: `connections` at most, where and how libpq would connect with `pgUrl` (a URL, a
 * keyword/value DSN, or "" for the PG* variables alone), TLS per sslmode or `--pg-ca`, bounded by `--pg-timeout`.
 */
export const pg = (pgUrl: Redacted.Redacted<string>, connections: number, pgCa: string | undefined, pgTimeout?: number | undefined) =>
  PgSession.layer(pgUrl, { maxConnections: connections, pgCa, timeoutSeconds: pgTimeout })

/** PostgreSQL only (plan): the profile's services, its client, Stats. */
export const database = (options: {
  readonly pgUrl: Redacted.Redacted<string>
  readonly pgCa: string | undefined
  readonly retries: number
  readonly connections: number
  readonly profile?: Profile | undefined
  readonly pgTimeout?: number | undefined
}) =>
  (options.profile === undefined
    ? Nice2.layer(defaultPolicy(options.retries))
    : Profiles.layer(options.profile, undefined, defaultPolicy(options.retries), {
      pgCa: options.pgCa,
      connections: options.connections,
      pgTimeout: options.pgTimeout
    })).pipe(
    Layer.provideMerge(pg(options.pgUrl, options.connections, options.pgCa, options.pgTimeout)),
    Layer.provideMerge(Stats.layer)
  )

/** The S3 store alone, for `concurrency` requests at once, `partConcurrency` parts of one object at a time. */
export const store = (settings: Settings, concurrency: number, partConcurrency = 1) =>
  S3Store.layer({
    endpoint: settings.s3Url,
    region: settings.region,
    bucket: settings.bucket,
    pathStyle: settings.pathStyle,
    accessKey: settings.accessKey,
    secretKey: settings.secretKey,
    partSize: settings.uploadChunkSize,
    partConcurrency,
    connections: concurrency,
    retry: defaultPolicy(settings.retries),
    timeoutMs: settings.s3Timeout * 1000,
    write: settings.s3Write
  })

/** PostgreSQL and S3 (verify, prune), for `concurrency` checks at once. */
export const databaseAndStore = (settings: Settings, concurrency: number) =>
  Layer.mergeAll(
    Profiles.layer(settings.profile, settings.shard, defaultPolicy(settings.retries), {
      pgCa: settings.pgCa,
      connections: 2,
      pgTimeout: settings.pgTimeout
    }),
    store(settings, concurrency)
  ).pipe(
    // one connection pages the rows, the others re-read large objects (--against-source)
    Layer.provideMerge(pg(settings.pgUrl, concurrency + 1, settings.pgCa, settings.pgTimeout)),
    Layer.provideMerge(Stats.layer)
  )

/** Provides `layer` and checks the connection first; connection failures become DatabaseUnavailable (exit 2). */
export const provide = <ROut>(pgUrl: Redacted.Redacted<string>, layer: Layer.Layer<ROut, SqlError.SqlError>) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.andThen(checkConnection(describeUrl(pgUrl)), effect).pipe(
    Effect.provide(layer),
    Effect.catchTag("SqlError", (error) =>
      Effect.fail(
        unreachable(describeUrl(pgUrl), "--pg-url", error)
      ))
  )
