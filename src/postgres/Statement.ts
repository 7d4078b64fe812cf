/**
 * Running a statement against PostgreSQL: which failures are worth retrying, the retrying runner every
 * profile and use case goes through, and the first contact that turns connection failures into a
 * setup error.
 */
import { Effect, Redacted } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, DatabaseUnavailable, describeCause } from "../domain/Errors.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import * as ConnectionString from "./ConnectionString.ts"

/**
 * SQLSTATEs the driver does not mark retryable but that only say "this connection is gone, try again":
 * 57P01 admin_shutdown (pg_terminate_backend), 57P02 crash_shutdown, 57P03 cannot_connect_now (the
 * server is starting or in recovery), 53300 too_many_connections.
 */
const transientSqlStates = new Set(["57P01", "57P02", "57P03", "53300"])

/** Connection problems are worth retrying; anything else (syntax, permissions) is not. */
export const isRetryableSql = (error: SqlError.SqlError): boolean => {
  if (error.isRetryable) return true
  const code = (error.reason.cause as { readonly code?: unknown } | undefined)?.code
  return typeof code === "string" && transientSqlStates.has(code)
}

/** Runs a statement with retries and turns a lasting failure into a `DatabaseError`. */
export const statement = <A, R>(
  operation: string,
  policy: RetryPolicy,
  effect: Effect.Effect<A, SqlError.SqlError, R>
): Effect.Effect<A, DatabaseError, R | Stats> =>
  retrying(effect, { policy, isRetryable: isRetryableSql, what: operation }).pipe(
    Effect.mapError((cause) => new DatabaseError({ operation, cause }))
  )

/** A statement runner for a profile's SQL: `statement` bound to its retry policy and the run's Stats. */
export type Runner = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) => Effect.Effect<A, DatabaseError>

export const runner = (policy: RetryPolicy): Effect.Effect<Runner, never, Stats> =>
  Effect.map(Stats, (stats): Runner => (operation, effect) =>
    statement(operation, policy, effect).pipe(Effect.provideService(Stats, stats)))

/**
 * Where a connection string (URL, keyword/value DSN, or "" for the PG* variables) points, as libpq
 * would resolve it, without the password, for messages: `user@host:port/db`.
 */
export const describeUrl = (url: Redacted.Redacted<string> | string, env?: ConnectionString.Env): string =>
  ConnectionString.describeString(Redacted.isRedacted(url) ? Redacted.value(url) : url, env)

/**
 * The first contact with PostgreSQL: turns connection and authentication failures into a
 * `DatabaseUnavailable` that says what went wrong and where, never the password.
 */
export const checkConnection = (where: string): Effect.Effect<void, DatabaseUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1`.pipe(
      Effect.mapError((error) => {
        const tag = error.reason._tag
        const problem = tag === "AuthenticationError"
          ? `authentication failed at ${where}: ${describeCause(error)}`
          : tag === "ConnectionError"
          ? `cannot connect to ${where}: ${describeCause(error)}`
          : `${where}: ${describeCause(error)}`
        return new DatabaseUnavailable({ problem })
      })
    )
  })
