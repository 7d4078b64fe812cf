// Other sessions on the test database, as an application would hold them: an open transaction that
// read a table (and so holds its ACCESS SHARE lock until it ends), and who is queued for a table's lock.
import { Effect, type Scope } from "effect"
import { SqlClient, type SqlError } from "effect/sql"

export interface OpenTransaction {
  /** the session's backend pid, as pg_locks and lo-migrate's messages name it */
  readonly pid: number
  /** runs a statement inside the open transaction */
  readonly execute: (statement: string) => Effect.Effect<ReadonlyArray<unknown>, SqlError.SqlError>
  /** ends the transaction (ROLLBACK), releasing its locks; also done when the scope closes */
  readonly end: Effect.Effect<void>
}

/** A reserved session with a transaction open after `SELECT count(*) FROM <table>`: it holds the table. */
export const openTransactionOn = (
  table: string
): Effect.Effect<OpenTransaction, SqlError.SqlError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const session = yield* sql.reserve
    const execute = (statement: string) => session.execute(statement, [], undefined)
    const [row] = yield* execute("SELECT pg_backend_pid() AS pid")
    yield* execute("BEGIN")
    yield* execute(`SELECT count(*) FROM ${table}`)
    let ended = false
    const end = Effect.suspend(() => {
      if (ended) return Effect.void
      ended = true
      return execute("ROLLBACK").pipe(Effect.ignore)
    })
    yield* Effect.addFinalizer(() => end)
    return { pid: Number((row as { readonly pid: unknown }).pid), execute, end }
  })

/** How many lock requests on `table` (regclass text) are waiting, not granted. */
export const lockWaiters = (table: string): Effect.Effect<number, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [row] = yield* sql<{ readonly n: number }>`
      SELECT count(*)::int AS n FROM pg_catalog.pg_locks WHERE relation = to_regclass(${table}) AND NOT granted`
    return row?.n ?? 0
  })

/** Polls `check` every 50 ms until it holds, for at most `ms` (a failing check counts as false). */
export const waitUntil = <R>(check: Effect.Effect<boolean, unknown, R>, ms: number): Effect.Effect<void, never, R> =>
  Effect.gen(function*() {
    const until = Date.now() + ms
    while (!(yield* check.pipe(Effect.catch(() => Effect.succeed(false)))) && Date.now() < until) yield* Effect.sleep("50 millis")
  })

/** How many lo-migrate run locks (advisory locks) are held on the current database. */
export const runLocksHeld: Effect.Effect<number, SqlError.SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ readonly n: number }>`
    SELECT count(*)::int AS n FROM pg_catalog.pg_locks
    WHERE locktype = 'advisory' AND granted AND classid::int = hashtext('lo-migrate')
      AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())`
  return row?.n ?? 0
})
