/**
 * Where the resume watermark lives between runs: one row per table, key columns and result (RunKey.ts:
 * `public._nice_binary (hash) -> sha2`, plus ` shard i/n`) in
 * `lo_migrate_watermark(table_name text PRIMARY KEY, key text NOT NULL, updated_at timestamptz)`, in the
 * same database as the rows, so it can never describe another database's progress. A resumed run lists
 * rows after `key` instead of walking again past every row finished before; the row is deleted when a
 * run completes. Creating the table needs CREATE on the schema (or an administrator creates it and
 * grants SELECT, INSERT, UPDATE, DELETE on it): without it, runs work as before, without a watermark
 * (a warning says so).
 */
import { Effect, Option } from "effect"
import { SqlClient } from "effect/sql"
import type { DatabaseError } from "../domain/Errors.ts"
import { type Shard, shardSuffix } from "../domain/Profile.ts"
import type { RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import { describeCause } from "../domain/Errors.ts"
import type { RunKey } from "./RunKey.ts"
import { statement } from "./Statement.ts"

export const tableName = "lo_migrate_watermark"

export interface WatermarkTable {
  /** the watermark a previous run left for `table`, if any */
  readonly read: Effect.Effect<Option.Option<string>, DatabaseError, Stats>
  readonly write: (key: string) => Effect.Effect<void, DatabaseError, Stats>
  /** forgets the watermark: the next run lists from the start */
  readonly clear: Effect.Effect<void, DatabaseError, Stats>
}

/**
 * The watermark of `key` (and `shard`), its table created if missing; None when this role cannot create
 * it. A watermark an earlier version kept under `key.legacy` is taken over or deleted first (RunKey.ts).
 */
export const open = (
  key: RunKey,
  shard: Shard | undefined,
  policy: RetryPolicy
): Effect.Effect<Option.Option<WatermarkTable>, never, SqlClient.SqlClient | Stats> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const table = `${key.watermark}${shardSuffix(shard)}`
    // an existing table is used as is (an administrator may create it for a role without CREATE)
    const [found] = yield* sql<{ readonly present: boolean }>`
      SELECT to_regclass('lo_migrate_watermark') IS NOT NULL AS present`.pipe(
      Effect.catch(() => Effect.succeed([{ present: false }]))
    )
    const created = found?.present === true ? true : yield* sql`
      CREATE TABLE IF NOT EXISTS lo_migrate_watermark (
        table_name text PRIMARY KEY,
        key text NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
      )`.pipe(
      Effect.as(true),
      Effect.catch((error) =>
        Effect.as(
          Effect.logWarning(
            `cannot create ${tableName} (${describeCause(error)}): this run keeps no resume watermark`
          ),
          false
        )
      )
    )
    if (!created) return Option.none()
    if (key.legacy !== undefined) yield* takeOver(sql, policy, `${key.legacy.name}${shardSuffix(shard)}`, table, key.legacy.adopt)
    return Option.some<WatermarkTable>({
      read: statement(
        "read the watermark",
        policy,
        sql<{ readonly key: string }>`SELECT key FROM lo_migrate_watermark WHERE table_name = ${table}`
      ).pipe(Effect.map((rows) => Option.fromUndefinedOr(rows[0]?.key))),
      write: (key) =>
        statement(
          "record the watermark",
          policy,
          sql`
            INSERT INTO lo_migrate_watermark (table_name, key, updated_at) VALUES (${table}, ${key}, now())
            ON CONFLICT (table_name) DO UPDATE SET key = EXCLUDED.key, updated_at = EXCLUDED.updated_at`
        ).pipe(Effect.asVoid),
      clear: statement(
        "clear the watermark",
        policy,
        sql`DELETE FROM lo_migrate_watermark WHERE table_name = ${table}`
      ).pipe(Effect.asVoid)
    })
  })

/**
 * An earlier version's watermark row (`old`): renamed to `current` when `adopt` and no `current` row
 * exists yet, otherwise deleted (it would never be read again), saying so either way.
 */
const takeOver = (sql: SqlClient.SqlClient, policy: RetryPolicy, old: string, current: string, adopt: boolean) =>
  Effect.gen(function*() {
    if (adopt) {
      const [moved] = yield* statement(
        "take over the watermark of an earlier version",
        policy,
        sql<{ readonly key: string }>`
          UPDATE lo_migrate_watermark SET table_name = ${current}
          WHERE table_name = ${old} AND NOT EXISTS (SELECT 1 FROM lo_migrate_watermark WHERE table_name = ${current})
          RETURNING key`
      )
      if (moved !== undefined) yield* Effect.logInfo(`watermark '${old}' of an earlier version kept as '${current}'`)
    }
    const [dropped] = yield* statement(
      "delete the watermark of an earlier version",
      policy,
      sql<{ readonly key: string }>`DELETE FROM lo_migrate_watermark WHERE table_name = ${old} RETURNING key`
    )
    if (dropped !== undefined) {
      yield* Effect.logInfo(
        adopt
          ? `watermark '${old}' of an earlier version deleted: '${current}' is newer`
          : `watermark '${old}' of an earlier version deleted: it does not say which key columns its key (${dropped.key}) ` +
            `is of; this run lists from the start`
      )
    }
  }).pipe(
    // like a missing watermark table, this costs a longer listing at worst, never the run
    Effect.catch((error) => Effect.logWarning(`cannot take over the watermark '${old}' of an earlier version: ${error.message}`))
  )
