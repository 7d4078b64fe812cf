/**
 * Schema changes on the application's tables (the result column's ADD COLUMN, finalize's NOT NULL and
 * unique index) with a bounded wait for their lock.
 *
 * ALTER TABLE needs an ACCESS EXCLUSIVE lock. Waiting for it behind a long transaction (even an idle
 * one that only read the table) is not only slow: every later query on the table, the application's
 * plain SELECTs included, queues behind the waiting ALTER. So the statement runs in a transaction with
 * `SET LOCAL lock_timeout`: after `lockTimeout` it gives up, the queue behind it moves on, and the run
 * ends with `TableBusy` (exit 2) naming the sessions that hold the table and the statement to run by
 * hand. It is never retried: every attempt would block the application again.
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import { TableBusy } from "../domain/Errors.ts"
import { transaction } from "./Transaction.ts"

/** How long a schema change waits for its lock, in milliseconds. */
export const lockTimeoutMs = 5_000

export const isLockTimeout = (error: SqlError.SqlError): boolean =>
  error.reason._tag === "LockTimeoutError" ||
  (error.reason.cause as { readonly code?: unknown } | undefined)?.code === "55P03"

interface Holder {
  readonly pid: number | null
  readonly mode: string
  readonly usename: string | null
  readonly application_name: string | null
  readonly state: string | null
  readonly xact_seconds: number | null
}

const describeHolder = (h: Holder): string => {
  if (h.pid === null) return `a prepared transaction (${h.mode}; see pg_prepared_xacts)`
  const who = [
    h.usename === null ? undefined : `user ${h.usename}`,
    h.application_name === null || h.application_name === "" ? undefined : `application ${JSON.stringify(h.application_name)}`,
    h.state === null ? undefined : h.xact_seconds === null ? h.state : `${h.state}, transaction open for ${h.xact_seconds} s`
  ].filter((x) => x !== undefined)
  return `pid ${h.pid} (${[...who, h.mode].join(", ")})`
}

/**
 * The sessions holding a lock on `relation` (a regclass text, as SQL reads it), oldest transaction
 * first: pg_locks and pg_stat_activity show pid, user, application and state to any role.
 */
const holders = (sql: SqlClient.SqlClient, relation: string) =>
  sql.unsafe<Holder>(
    `SELECT l.pid, l.mode, a.usename::text AS usename, a.application_name, a.state,
       extract(epoch FROM now() - a.xact_start)::int AS xact_seconds
     FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass($1)
       AND l.pid IS DISTINCT FROM pg_backend_pid()
     ORDER BY a.xact_start NULLS FIRST, l.pid LIMIT 5`,
    [relation]
  ).pipe(
    Effect.map((rows) => rows.map(describeHolder)),
    Effect.catch(() => Effect.succeed([] as ReadonlyArray<string>))
  )

/**
 * Runs `statements` in one transaction whose lock waits end after `lockTimeoutMs`. A lock timeout is
 * a `TableBusy`; any other failure stays the driver's `SqlError`, for the caller to name.
 */
export const alter = (
  sql: SqlClient.SqlClient,
  options: {
    /** the table, as SQL names it (quoted), to find who holds it */
    readonly relation: string
    /** the table, as shown to users */
    readonly shown: string
    /** what the statements do, e.g. "add column sha2" */
    readonly what: string
    readonly statements: ReadonlyArray<string>
  }
): Effect.Effect<void, TableBusy | SqlError.SqlError> =>
  transaction(sql, Effect.gen(function*() {
    // a constant, not user input (SET takes no bound parameters)
    yield* sql.unsafe(`SET LOCAL lock_timeout = '${lockTimeoutMs}ms'`)
    // a schema change may rightly run long (an index over millions of rows): --pg-timeout's
    // statement_timeout is for the copy's statements, not for this one
    yield* sql.unsafe(`SET LOCAL statement_timeout = 0`)
    for (const statement of options.statements) yield* sql.unsafe(statement)
  })).pipe(
    Effect.catchIf(isLockTimeout, () =>
      Effect.flatMap(holders(sql, options.relation), (held) =>
        Effect.fail(
          new TableBusy({
            table: options.shown,
            what: options.what,
            waitedMs: lockTimeoutMs,
            holders: held,
            manual: options.statements.map((s) => `${s};`).join(" ")
          })
        )))
  )
