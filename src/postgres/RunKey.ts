/**
 * What a run's lock and its resume watermark are keyed by: what the rows are, as the catalog names
 * them, never as a profile or a flag spelled them.
 *
 * - The **run lock** is the table alone, schema-qualified from the catalog (`public._nice_binary`), so
 *   nice2 and `--profile table --table _nice_binary` (or `public._nice_binary`, or `"_nice_binary"`)
 *   take the same lock and exclude each other, whatever their key columns: two runs marking the same
 *   table at once are refused, not only two runs of one profile.
 * - The **watermark** is the table, its key columns and where the result goes
 *   (`public._nice_binary (hash) -> sha2`): a watermark says "every row up to this key has a result",
 *   which means something only for keys of that shape and that result. A run with other key columns
 *   (or another result column) starts from the beginning instead of resuming after a key of another
 *   shape; the other watermark stays for runs with those columns, and is deleted by the one that
 *   completes. The same rows keyed the same way share it: nice2 and `--profile table --key-column hash
 *   --sha256-column sha2` on `_nice_binary` list the same keys in the same order.
 *
 * Earlier versions keyed both by the table name as the profile spelled it (`_nice_binary`,
 * `blob_chunk`, `"schema"."table"` for `--profile table`). Such a watermark row is taken over (renamed)
 * where its key's shape is certain, nice2's and relstorage's (fixed key columns, same database), and
 * deleted for `--profile table`, whose key columns it does not record: resuming after it could skip
 * rows, starting afresh only walks once more past the finished ones (WatermarkTable.ts).
 */
import { Effect } from "effect"
import type { SqlClient } from "effect/sql"
import type { DatabaseError } from "../domain/Errors.ts"
import type { Runner } from "./Statement.ts"

export interface RunKey {
  /** the run lock's name: the table, schema-qualified as the catalog names it */
  readonly lock: string
  /** the watermark's name: the table, its key columns and the result */
  readonly watermark: string
  /** the name an earlier version kept this watermark under; `adopt`: its key surely has this shape */
  readonly legacy?: { readonly name: string; readonly adopt: boolean } | undefined
}

/**
 * Resolves `relation` (SQL text, as `to_regclass` reads it) in the catalog; a table that does not exist
 * keeps its name as given (prepare then refuses it). Identifiers are formatted by the server (`%I`).
 */
export const resolve = (
  sql: SqlClient.SqlClient,
  run: Runner,
  options: {
    readonly relation: string
    readonly keyColumns: ReadonlyArray<string>
    /** the result column (or table), an identifier */
    readonly result: string
    /** appended to the result, e.g. where another database holds it */
    readonly resultWhere?: string | undefined
    readonly legacy?: RunKey["legacy"]
  }
): Effect.Effect<RunKey, DatabaseError> =>
  run(
    "resolve the table",
    sql<{ readonly name: string | null; readonly keys: string; readonly result: string }>`
      SELECT (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c
              JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = to_regclass(${options.relation})) AS name,
        (SELECT string_agg(format('%I', u.k), ', ' ORDER BY u.o)
         FROM unnest(${options.keyColumns}::text[]) WITH ORDINALITY AS u(k, o)) AS keys,
        format('%I', ${options.result}::text) AS result`
  ).pipe(
    Effect.map(([row]) => {
      const lock = row?.name ?? options.relation
      const result = `${row?.result ?? options.result}${options.resultWhere === undefined ? "" : ` ${options.resultWhere}`}`
      return { lock, watermark: `${lock} (${row?.keys ?? options.keyColumns.join(", ")}) -> ${result}`, legacy: options.legacy }
    })
  )
