/**
 * Running a statement against PostgreSQL: which failures are worth retrying, the retrying runner every
 * profile and use case goes through, and the first contact that turns connection failures into a
 * setup error.
 */
import { Effect, Redacted } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, DatabaseUnavailable, describeCause } from "../domain/Errors.ts"
import { backoff, retrying, type RetryPolicy } from "../core/Retry.ts"
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

const sqlStateOf = (error: unknown): string | undefined => {
  const code = (error as { readonly reason?: { readonly cause?: { readonly code?: unknown } } } | undefined)?.reason?.cause?.code
  return typeof code === "string" ? code : undefined
}

/**
 * A failed first contact as a setup error (exit 2): what went wrong and where, never the password, and
 * what to check by the kind of failure: the host and port, the user and password, the database name,
 * the server's certificate, in `setting` (the flag or config key that points at the server).
 */
export const unreachable = (where: string, setting: string, error: unknown): DatabaseUnavailable => {
  const tag = SqlError.isSqlError(error) ? error.reason._tag : undefined
  const code = sqlStateOf(error)
  const text = describeCause(error)
  const fix = (() => {
    if (code === "28P01" || (tag === "AuthenticationError" && code === undefined)) {
      return `check the user and password in ${setting} (a password left out comes from PGPASSWORD or ~/.pgpass)`
    }
    if (code === "28000") {
      return "the server's pg_hba.conf admits no connection of this user to this database from here: ask its administrator " +
        `to add one, or connect (${setting}) as a user it admits`
    }
    if (code === "3D000") return `check the database name in ${setting}`
    if (code === "57P03") return "the server is starting or in recovery: run it again once PostgreSQL accepts connections"
    if (code === "53300") return "the server has no connection slot left: run it again later, or raise the server's max_connections"
    if (/certificate|self.signed|CERT_|TLS/i.test(text)) {
      return `give the CA that signs the server's certificate with --pg-ca FILE (or sslrootcert= in ${setting}); docs/access.md`
    }
    if (tag === "ConnectionError" || code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EHOSTUNREACH" || code === "ETIMEDOUT") {
      return `check the host and port in ${setting}: PostgreSQL must run there and accept TCP connections ` +
        "(listen_addresses, firewall); docs/connections.md lists the forms"
    }
    return undefined
  })()
  const problem = tag === "AuthenticationError" || code === "28P01" || code === "28000"
    ? `authentication failed at ${where}: ${text}`
    : `cannot connect to ${where}: ${text}`
  return new DatabaseUnavailable({ problem, setting, fix })
}

/**
 * The first contact with PostgreSQL: turns connection and authentication failures into a
 * `DatabaseUnavailable` that says what went wrong and where (never the password) and what to check in
 * `setting`.
 */
export const checkConnection = (where: string, setting = "--pg-url"): Effect.Effect<void, DatabaseUnavailable, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT 1`.pipe(
      Effect.retry({ schedule: firstContactRetries, while: closedMidway }),
      Effect.mapError((error) => unreachable(where, setting, error))
    )
  })

/**
 * A connection the network or the server closed after it was opened (a reset, a terminated backend, a
 * server starting up) is tried again, a few times over about 3 s, before the run counts the server as
 * unreachable; a refused connection, an unknown host or a wrong password is an answer, told at once.
 */
const closedMidway = (error: SqlError.SqlError): boolean => {
  const code = sqlStateOf(error)
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EHOSTUNREACH" || code === "EAI_AGAIN") return false
  if (code === "ECONNRESET" || code === "EPIPE" || code === "57P01" || code === "57P02" || code === "57P03") return true
  // @effect/sql-pg: "Connection closed unexpectedly" (during start-up), "Connection closed" (mid-query)
  return /connection terminated|connection closed|ECONNRESET|socket hang up|EPIPE|Connection ended/i.test(describeCause(error))
}

const firstContactRetries = backoff({ attempts: 5, base: "200 millis", cap: "2 seconds" })
