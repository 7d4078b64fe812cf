/**
 * The index on `blob_chunk(chunk)` that deleting chunks needs.
 *
 * RelStorage's `blob_chunk_delete_trigger` (procs/blob_chunk_delete_trigger.sql, in every 4.x database)
 * runs `SELECT count(*) FROM blob_chunk WHERE chunk = OLD.chunk` before each deleted row, to unlink the
 * large object with its last reference. RelStorage created `blob_chunk_loid ON blob_chunk (chunk)` up to
 * 3.0a3; 3.0a4 dropped it (cc922d52), and 4.2's schema has only `blob_chunk_lookup` on (zoid[, tid]). So
 * on a database made by RelStorage 3.0 or later each deleted chunk scans the whole table: measured 6.5 s
 * for 200 rows of a 500k-row blob_chunk, 11 ms with the index; hours for a real database. prune's own
 * "is this large object still referenced" lookup scans it too, once per batch.
 *
 * Pre-flight (prune, and `release` itself, the only statement that deletes blob_chunk rows): an index
 * whose first column is `chunk` (btree or hash, valid, not partial) must exist. Without it prune refuses
 * (exit 2) naming `CREATE INDEX CONCURRENTLY blob_chunk_chunk_idx ON blob_chunk (chunk)`, or runs that
 * statement itself with `--create-chunk-index`. CONCURRENTLY does not block RelStorage's writes; it cannot
 * run in a transaction, and the role must own blob_chunk.
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, PruneRefused, describeCause } from "../../domain/Errors.ts"

export const indexName = "blob_chunk_chunk_idx"
export const createStatement = `CREATE INDEX CONCURRENTLY ${indexName} ON blob_chunk (chunk)`
const dropStatement = `DROP INDEX CONCURRENTLY ${indexName}`

export interface State {
  /** a usable index on (chunk) exists */
  readonly indexed: boolean
  /** its name, when indexed */
  readonly name: string | undefined
  /** an index named blob_chunk_chunk_idx that is not valid (a CREATE INDEX CONCURRENTLY that failed) */
  readonly invalidOwn: boolean
  /** blob_chunk has a row-level DELETE trigger (RelStorage's blob_chunk_delete) */
  readonly deleteTrigger: boolean
}

type Query = (operation: string, text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<Record<string, unknown>>, DatabaseError>

export const inspect = (query: Query): Effect.Effect<State, DatabaseError> =>
  Effect.gen(function*() {
    const indexes = yield* query(
      "look for an index on blob_chunk(chunk)",
      `SELECT c.relname::text AS name, i.indisvalid AND i.indisready AS valid
       FROM pg_catalog.pg_index i
       JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
       JOIN pg_catalog.pg_am am ON am.oid = c.relam
       JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
       WHERE i.indrelid = to_regclass('blob_chunk') AND a.attname = 'chunk' AND i.indpred IS NULL
         AND am.amname IN ('btree', 'hash')
       ORDER BY 2 DESC, 1`,
      []
    )
    const [t] = yield* query(
      "look for blob_chunk's delete trigger",
      `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger t WHERE t.tgrelid = to_regclass('blob_chunk')
         AND NOT t.tgisinternal AND (t.tgtype & 1) <> 0 AND (t.tgtype & 8) <> 0) AS present`,
      []
    )
    const valid = indexes.find((r) => r.valid === true)
    return {
      indexed: valid !== undefined,
      name: valid === undefined ? undefined : String(valid.name),
      invalidOwn: indexes.some((r) => r.valid !== true && r.name === indexName),
      deleteTrigger: t?.present === true
    }
  })

/** Why deleting without the index is refused, for the messages. */
export const whyNeeded = (state: State): string =>
  (state.deleteTrigger
    ? "RelStorage's delete trigger (blob_chunk_delete) counts the blob_chunk rows of each deleted row's large object, " +
      "so without it every deleted chunk scans the whole table (hours for a large blob_chunk)"
    : "prune looks up the chunks still referencing each batch's large objects, a scan of the whole table per batch without it") +
  "; RelStorage 3.0 and later do not create it"

const fix = (state: State) =>
  `run, as the owner of blob_chunk (it does not block RelStorage's writes): ${state.invalidOwn ? `${dropStatement}; ` : ""}` +
  `${createStatement}; or rerun prune with --create-chunk-index, which does it`

export const refusal = (state: State): PruneRefused =>
  new PruneRefused({
    table: "blob_chunk",
    problem: `${state.invalidOwn ? `index ${indexName} exists but is not valid (an interrupted CREATE INDEX CONCURRENTLY)` : "has no index on (chunk)"}: ${whyNeeded(state)}`,
    fix: fix(state)
  })

const sqlState = (error: SqlError.SqlError) => (error.reason.cause as { readonly code?: unknown } | undefined)?.code

/**
 * Creates the index (dropping an invalid one of that name first) on a session of its own: CONCURRENTLY
 * cannot run in a transaction block, and `statement_timeout` is lifted for it (--pg-timeout's watch of
 * the socket still applies: a build longer than that is cut off and leaves an invalid index, which the
 * next run drops and builds again). Returns the seconds it took.
 */
export const create = (sql: SqlClient.SqlClient, state: State): Effect.Effect<number, PruneRefused | DatabaseError> =>
  Effect.gen(function*() {
    const started = Date.now()
    const conn = yield* sql.reserve
    const exec = (text: string) => conn.executeUnprepared(text, [], undefined)
    yield* Effect.gen(function*() {
      yield* exec("SET statement_timeout = 0")
      if (state.invalidOwn) yield* exec(dropStatement)
      yield* exec(createStatement)
    }).pipe(Effect.ensuring(Effect.ignore(exec("RESET statement_timeout"))))
    return (Date.now() - started) / 1000
  }).pipe(
    Effect.scoped,
    Effect.catchTag("SqlError", (error) =>
      Effect.fail(
        sqlState(error) === "42501"
          ? new PruneRefused({
            table: "blob_chunk",
            problem: `has no index on (chunk), and --create-chunk-index cannot create it: ${describeCause(error)}`,
            fix: `run, as the owner of blob_chunk: ${createStatement};`
          })
          : new DatabaseError({ operation: `create index ${indexName}`, cause: error })
      ))
  )
