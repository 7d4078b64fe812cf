/**
 * The Nice2 profile (the original tool's only one): `_nice_binary(hash char(40) NOT NULL, size bigint,
 * mime_type varchar, data oid, sha2 char(64))`. The key is the SHA-1 hex of the content; the result is
 * the SHA-256 hex written to `sha2`.
 */
import { Effect, Layer, Result } from "effect"
import { SqlClient } from "effect/sql"
import {
  BatchJobActive,
  DatabaseError,
  DatabaseUnavailable,
  describeCause,
  SchemaMismatch
} from "../../domain/Errors.ts"
import * as ContentType from "../../domain/ContentType.ts"
import { isSha1Hex, objectKey, type RowFailure, type Stored } from "../../domain/LargeObject.ts"
import type { Shard } from "../../domain/Profile.ts"
import * as Recorded from "../../domain/Recorded.ts"
import type { RetryPolicy } from "../../core/Retry.ts"
import type { Stats } from "../../core/Stats.ts"
import * as Ddl from "../../postgres/Ddl.ts"
import * as Grants from "../../postgres/Grants.ts"
import { oidArray } from "../../postgres/LargeObjects.ts"
import * as Nice2Lifecycle from "./Nice2Lifecycle.ts"
import * as RunKey from "../../postgres/RunKey.ts"
import { type ListedWithWarning, logWarnings } from "../../phases/CopySource.ts"
import * as ProfileServices from "../../phases/ProfileServices.ts"
import { runner } from "../../postgres/Statement.ts"
import { transaction } from "../../postgres/Transaction.ts"

export const table = "_nice_binary"
export const batchJobTable = "nice_batch_job"
export const deleteJob = "nice2.dms.DeleteUnreferencedBinariesBatchJob"
const requiredColumns = ["hash", "size", "mime_type", "data"] as const

interface Row {
  readonly hash: string
  readonly data: number | null
  readonly size: bigint | number | string | null
  readonly mime_type: string | null
}

const toListed = (row: Row): ListedWithWarning => {
  const key = row.hash
  const fail = (reason: RowFailure["reason"], detail: string): ListedWithWarning => [{
    key,
    row: Result.fail({ key, oid: row.data, reason, detail })
  }, undefined]
  if (!isSha1Hex(key)) return fail("malformed-key", `hash ${JSON.stringify(key)} is not 40 hex digits (a SHA-1)`)
  if (row.data === null) return fail("null-data", "data is NULL: the row has no large object")
  // a mime_type that cannot be sent as a header is that row's (warned) change, never the run's end
  const { contentType, warning } = ContentType.forRow(key, row.mime_type)
  return [{
    key,
    row: Result.succeed({
      key,
      oid: row.data,
      // a NULL size (the schema says NOT NULL, but databases drift) is unknown, never 0
      size: row.size === null ? 0 : Number(row.size),
      ...(row.size === null ? { sizeUnknown: true } : {}),
      contentType,
      expectedSha1: key.toLowerCase()
    })
  }, warning]
}

export const layer = (policy: RetryPolicy, shard?: Shard | undefined): Layer.Layer<ProfileServices.ProfileServices, never, SqlClient.SqlClient | Stats> =>
  ProfileServices.layer(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const run = yield* runner(policy)

      const columnsOf = (name: string) =>
        run(
          "read the table's columns",
          sql<{ readonly column_name: string }>`
            SELECT a.attname AS column_name
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid = to_regclass(${name}) AND a.attnum > 0 AND NOT a.attisdropped`
        ).pipe(Effect.map((rows) => new Set(rows.map((r) => r.column_name))))

      const prepare = Effect.gen(function*() {
        const columns = yield* columnsOf(table)
        if (columns.size === 0) return yield* new SchemaMismatch({ table, ...Nice2Lifecycle.Nice2Fixes.missingTable })
        const missing = requiredColumns.filter((c) => !columns.has(c))
        if (missing.length > 0) return yield* new SchemaMismatch({ table, ...Nice2Lifecycle.Nice2Fixes.missingColumns(missing) })
        yield* Grants.require(
          sql,
          run,
          [{ table, privileges: ["SELECT", "UPDATE"] }, { table: batchJobTable, privileges: ["SELECT"] }],
          `the copy reads and marks the rows of ${table} and checks the batch job in ${batchJobTable}`
        )
        if (!columns.has("sha2")) {
          // a bounded wait for the table's lock: the application's queries queue behind a waiting ALTER
          yield* Ddl.alter(sql, {
            relation: table,
            shown: table,
            what: "add column sha2",
            statements: [`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS sha2 character(64)`]
          }).pipe(
            Effect.catchTag("SqlError", (error) =>
              Effect.fail(
                new DatabaseUnavailable({
                  problem: `cannot add column sha2 to ${table}: ${describeCause(error)}`,
                  fix: `run, as the table's owner: ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS sha2 character(64); then run lo-migrate again`
                })
              ))
          )
          yield* Effect.logInfo(`added column sha2 character(64) to ${table}`)
        }
        if ((yield* columnsOf(batchJobTable)).size === 0) {
          return yield* new SchemaMismatch({
            table: batchJobTable,
            problem: `does not exist (or is not visible to this role): the ${deleteJob} state cannot be checked`,
            fix: "connect to the Nice2 database (--pg-url) as a role that sees Nice2's tables"
          })
        }
        const jobs = yield* run(
          "check the batch job",
          sql<{ readonly active: boolean }>`SELECT active FROM nice_batch_job WHERE id = ${deleteJob}`
        )
        if (jobs.length === 0) return yield* new BatchJobActive({ job: deleteJob, state: "missing" })
        if (jobs.some((j) => j.active)) return yield* new BatchJobActive({ job: deleteJob, state: "active" })
      })

      // --shard i/n: only the rows whose key hashes to i (values bound, computed by the server)
      const inShard = shard === undefined
        ? sql.literal("true")
        : sql`abs(hashtext(hash::text)::bigint) % ${shard.count} = ${shard.index}`

      const count = run(
        "count rows",
        sql<{ readonly remaining: bigint | number; readonly total: bigint | number }>`
          SELECT count(*) FILTER (WHERE sha2 IS NULL) AS remaining, count(*) AS total FROM _nice_binary
          WHERE ${inShard}`
      ).pipe(Effect.map(([r]) => ({ remaining: Number(r?.remaining ?? 0), total: Number(r?.total ?? 0) })))

      // Keyset pagination: each page is its own short statement, so no snapshot is held for the run
      // and vacuum is never held back; `hash` is compared as bpchar so its index serves the order.
      const page = (after: string | undefined, limit: number) =>
        run(
          "list rows",
          after === undefined
            ? sql<Row>`
                SELECT hash, data, size, mime_type FROM _nice_binary
                WHERE sha2 IS NULL AND ${inShard} ORDER BY hash LIMIT ${limit}`
            : sql<Row>`
                SELECT hash, data, size, mime_type FROM _nice_binary
                WHERE sha2 IS NULL AND ${inShard} AND hash > ${after}::bpchar ORDER BY hash LIMIT ${limit}`
        ).pipe(Effect.flatMap((rows) => logWarnings(rows.map(toListed))))

      // One statement per chunk, matching the row's own key value (keys in upper case work too), the large
      // object that was read (a row pointed at another one since must not get the old content's sha2:
      // prune would then unlink the new one) and no other result (recording the same sha2 again, as a
      // second manifest line of the row does, is harmless; a different one is left alone).
      const commit = (chunk: ReadonlyArray<Stored>) =>
        Effect.gen(function*() {
          const rows = yield* run(
            "record sha2",
            transaction(sql, 
              sql<{ readonly hash: string }>`
                UPDATE _nice_binary AS t SET sha2 = u.sha2
                FROM unnest(${chunk.map((s) => s.candidate.key)}::bpchar[], ${oidArray(chunk.map((s) => s.candidate.oid ?? 0))},
                  ${chunk.map((s) => s.sha256)}::bpchar[]) AS u(hash, oid, sha2)
                WHERE t.hash = u.hash AND t.data = u.oid AND (t.sha2 IS NULL OR t.sha2 = u.sha2)
                RETURNING t.hash`
            )
          )
          const marked = new Set(rows.map((r) => r.hash))
          const unmarked = chunk.filter((s) => !marked.has(s.candidate.key))
          if (unmarked.length === 0) return { vanished: [] }
          // why not: gone, or holding something else now (only a report: read after the commit)
          const now = yield* run(
            "look at rows not marked",
            sql<{ readonly hash: string; readonly data: number | null; readonly sha2: string | null }>`
              SELECT hash, data, sha2 FROM _nice_binary WHERE hash = ANY(${unmarked.map((s) => s.candidate.key)}::bpchar[])`
          )
          const byKey = new Map(now.map((r) => [r.hash, r]))
          const changed = unmarked.flatMap((s) => {
            const row = byKey.get(s.candidate.key)
            if (row === undefined) return []
            const detail = row.data !== s.candidate.oid
              ? `data is now oid ${row.data ?? "NULL"}, not ${s.candidate.oid} as read: not marked (its object ${s.key} ` +
                "is in S3; the next run reads the row again)"
              : `sha2 is already ${row.sha2?.trim()}, not ${s.sha256}: left as it is`
            return [{ stored: s, detail }]
          })
          return { vanished: unmarked.filter((s) => !byKey.has(s.candidate.key)), changed }
        })

      const recorded = (keys: ReadonlyArray<string>) =>
        run(
          "read sha2",
          sql<{ readonly hash: string; readonly sha2: string | null }>`
            SELECT hash, sha2 FROM _nice_binary WHERE hash = ANY(${keys}::bpchar[])`
        ).pipe(Effect.map((rows) =>
          new Map(rows.map((r) => [r.hash, r.sha2 === null ? Recorded.notMigrated : Recorded.sha256(r.sha2.trim())]))
        ))

      const finalize = Effect.gen(function*() {
        const [open] = yield* run(
          "count unmigrated rows",
          sql<{ readonly n: bigint | number }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NULL`
        )
        if (Number(open?.n ?? 0) > 0) {
          return yield* new SchemaMismatch({
            table,
            problem: `${open?.n} row(s) still have no sha2: cannot add NOT NULL`,
            fix: "run lo-migrate migrate (without --finalize) until it exits 0, then --finalize again"
          })
        }
        const duplicates = yield* run(
          "look for duplicate sha2",
          sql<{ readonly sha2: string; readonly n: bigint | number }>`
            SELECT sha2, count(*) AS n FROM _nice_binary GROUP BY sha2 HAVING count(*) > 1 LIMIT 10`
        )
        if (duplicates.length > 0) {
          return yield* new SchemaMismatch({
            table,
            problem: `sha2 is not unique (e.g. ${duplicates.map((d) => `${d.sha2} x${d.n}`).join(", ")}): ` +
              "the unique index cannot be created",
            fix: "resolve the duplicate rows (SELECT hash, sha2 FROM _nice_binary WHERE sha2 IN (…)), then --finalize again"
          })
        }
        yield* Ddl.alter(sql, {
          relation: table,
          shown: table,
          what: "add NOT NULL and the unique index to sha2",
          statements: [
            `ALTER TABLE ${table} ALTER COLUMN sha2 SET NOT NULL`,
            `CREATE UNIQUE INDEX IF NOT EXISTS _nice_binary_sha2_key ON ${table} (sha2)`
          ]
        }).pipe(
          Effect.catchTag("SqlError", (cause) => Effect.fail(new DatabaseError({ operation: "add NOT NULL and the unique index", cause })))
        )
      })

      return {
        copy: {
        table,
        // the key columns are the profile's own: an earlier version's watermark (the table's name) fits
        runKey: RunKey.resolve(sql, run, { relation: table, keyColumns: ["hash"], result: "sha2", legacy: { name: table, adopt: true } }),
        shard,
        objectKey: (_, sha256) => objectKey(sha256),
        prepare,
        count,
        page,
        commit,
        recorded,
        finalize
        },
        ...Nice2Lifecycle.make(sql, run, shard)
      }
    })
  )
