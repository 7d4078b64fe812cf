/**
 * The Nice2 profile after the copy: what `plan`, `verify` and `prune` ask of `_nice_binary`.
 * Everything reads only (ordinary roles can read `pg_largeobject_metadata`), except `release`, which sets
 * `data = NULL` and unlinks the large object in one short transaction.
 */
import { Effect } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import * as ContentType from "../../domain/ContentType.ts"
import { type DatabaseError, MissingGrant, SchemaMismatch } from "../../domain/Errors.ts"
import type { Candidate } from "../../domain/LargeObject.ts"
import type { MigratedRow, Released } from "../../domain/MigratedObject.ts"
import type { Shard } from "../../domain/Profile.ts"
import type { Inventory } from "../../phases/PlanSource.ts"
import type { ProfileParts } from "../../phases/ProfileServices.ts"
import * as Grants from "../../postgres/Grants.ts"
import { oidArray } from "../../postgres/LargeObjects.ts"
import { transaction } from "../../postgres/Transaction.ts"

const table = "_nice_binary"
const batchJobTable = "nice_batch_job"
const deleteJob = "nice2.dms.DeleteUnreferencedBinariesBatchJob"
/** examples shown per problem */
const exampleCount = 10

/** What the pre-flights (Nice2.ts's too) say when _nice_binary is missing or not of Nice2's shape. */
export const Nice2Fixes = {
  missingTable: {
    problem: "does not exist (or is not visible to this role)",
    fix: `give --pg-url the Nice2 database (the role must see ${table} on its search_path); for another table, --profile table`
  },
  missingColumns: (missing: ReadonlyArray<string>) => ({
    problem: `lacks column(s) ${missing.join(", ")}`,
    fix: "this is not Nice2's table: for a table of another shape use --profile table (docs/table-profile.md)"
  })
}

type Run = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) => Effect.Effect<A, DatabaseError>

const num = (v: bigint | number | string | null | undefined): number => Number(v ?? 0)
const big = (v: bigint | number | string | null | undefined): bigint => BigInt(v ?? 0)
const splitKeys = (v: string | null): ReadonlyArray<string> => (v === null || v === "" ? [] : v.split(","))

type Lifecycle = Pick<ProfileParts, "plan" | "afterCopy">

export const make = (sql: SqlClient.SqlClient, run: Run, shard?: Shard | undefined): Lifecycle => {
  // verify and prune with --shard i/n: only the shard's rows (the same hash as the migration's listing)
  const inShard = shard === undefined
    ? sql.literal("true")
    : sql`abs(hashtext(t.hash::text)::bigint) % ${shard.count} = ${shard.index}`

  const columns = (name: string) =>
    run(
      "read the table's columns",
      sql<{ readonly column_name: string }>`
        SELECT a.attname AS column_name FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = to_regclass(${name}) AND a.attnum > 0 AND NOT a.attisdropped`
    ).pipe(Effect.map((rows) => new Set(rows.map((r) => r.column_name))))

  const readable = Grants.once(Grants.require(sql, run, [{ table, privileges: ["SELECT"] }], `reading the rows of ${table}`))

  /** Whether `sha2` exists; fails when the table itself is missing or not readable. Never adds anything. */
  const resultColumn = Effect.gen(function*() {
    const cols = yield* columns(table)
    if (cols.size === 0) return yield* new SchemaMismatch({ table, ...Nice2Fixes.missingTable })
    const missing = ["hash", "size", "mime_type", "data"].filter((c) => !cols.has(c))
    if (missing.length > 0) return yield* new SchemaMismatch({ table, ...Nice2Fixes.missingColumns(missing) })
    yield* readable
    return cols.has("sha2")
  })

  /** `sha2 IS NULL`, or `true` when the column does not exist yet (then every row is still to migrate). */
  const unmigrated = (hasSha2: boolean) => sql.literal(hasSha2 ? "t.sha2 IS NULL" : "true")
  const migrated = (hasSha2: boolean) => sql.literal(hasSha2 ? "t.sha2 IS NOT NULL" : "false")

  const notes = (hasSha2: boolean) =>
    Effect.gen(function*() {
      const out: Array<string> = []
      if (!hasSha2) {
        out.push(`column sha2 does not exist yet: every row counts as not migrated; migrate adds it (needs the table's owner)`)
      }
      const jobReadable = yield* Grants.require(sql, run, [{ table: batchJobTable, privileges: ["SELECT"] }], "").pipe(
        Effect.as(undefined),
        Effect.catchTag("MissingGrant", (e: MissingGrant) => Effect.succeed(e))
      )
      if ((yield* columns(batchJobTable)).size === 0) {
        out.push(`table ${batchJobTable} does not exist: migrate would refuse to start`)
      } else if (jobReadable !== undefined) {
        out.push(`role ${jobReadable.role} may not read ${batchJobTable}: migrate would refuse to start (${jobReadable.grants.join(" ")})`)
      } else {
        const jobs = yield* run(
          "check the batch job",
          sql<{ readonly active: boolean }>`SELECT active FROM nice_batch_job WHERE id = ${deleteJob}`
        )
        if (jobs.length === 0) out.push(`batch job ${deleteJob} has no row: migrate would refuse to start`)
        else if (jobs.some((j) => j.active)) out.push(`batch job ${deleteJob} is active: migrate would refuse to start`)
        else out.push(`batch job ${deleteJob} is inactive`)
      }
      return out
    })

  const inventory = (sizeBounds: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      const hasSha2 = yield* resultColumn
      const todo = unmigrated(hasSha2)
      const done = migrated(hasSha2)
      const [totals] = yield* run(
        "count rows and bytes",
        sql<{
          readonly total: bigint
          readonly migrated: bigint
          readonly total_bytes: string
          readonly migrated_bytes: string
        }>`
          SELECT count(*) AS total, count(*) FILTER (WHERE ${done}) AS migrated,
            coalesce(sum(t.size), 0)::text AS total_bytes,
            coalesce(sum(t.size) FILTER (WHERE ${done}), 0)::text AS migrated_bytes
          FROM _nice_binary t`
      )
      // width_bucket counts the thresholds <= size; a threshold of bound + 1 makes the bound inclusive
      const thresholds = sizeBounds.map((b) => b + 1)
      const buckets = yield* run(
        "size histogram",
        sql<{ readonly bucket: number | null; readonly n: bigint; readonly bytes: string }>`
          SELECT width_bucket(t.size, ${thresholds}::int8[]) AS bucket, count(*) AS n,
            coalesce(sum(t.size), 0)::text AS bytes
          FROM _nice_binary t WHERE ${todo} GROUP BY 1`
      )
      const histogram = [...sizeBounds, undefined].map((upTo, i) => {
        const b = buckets.find((r) => r.bucket === i)
        return { upTo, objects: num(b?.n), bytes: big(b?.bytes) }
      })
      const unknownSize = num(buckets.find((r) => r.bucket === null)?.n)

      const [nullCount] = yield* run(
        "count NULL data",
        sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM _nice_binary t WHERE ${todo} AND t.data IS NULL`
      )
      const nullExamples = yield* run(
        "list NULL data",
        sql<{ readonly hash: string }>`
          SELECT t.hash FROM _nice_binary t WHERE ${todo} AND t.data IS NULL ORDER BY t.hash LIMIT ${exampleCount}`
      )
      const [danglingCount] = yield* run(
        "count dangling oids",
        sql<{ readonly n: bigint }>`
          SELECT count(*) AS n FROM _nice_binary t
          WHERE ${todo} AND t.data IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = t.data)`
      )
      const danglingExamples = yield* run(
        "list dangling oids",
        sql<{ readonly hash: string; readonly data: number }>`
          SELECT t.hash, t.data FROM _nice_binary t
          WHERE ${todo} AND t.data IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = t.data)
          ORDER BY t.hash LIMIT ${exampleCount}`
      )
      const [malformedCount] = yield* run(
        "count malformed keys",
        sql<{ readonly n: bigint }>`
          SELECT count(*) AS n FROM _nice_binary t WHERE ${todo} AND t.hash !~ '^[0-9a-fA-F]{40}$'`
      )
      const malformedExamples = yield* run(
        "list malformed keys",
        sql<{ readonly hash: string }>`
          SELECT t.hash FROM _nice_binary t WHERE ${todo} AND t.hash !~ '^[0-9a-fA-F]{40}$'
          ORDER BY t.hash LIMIT ${exampleCount}`
      )
      const [shared] = yield* run(
        "count shared oids",
        sql<{ readonly oids: bigint; readonly rows: string }>`
          SELECT count(*) AS oids, coalesce(sum(s.n), 0)::text AS rows
          FROM (SELECT count(*) AS n FROM _nice_binary t WHERE t.data IS NOT NULL GROUP BY t.data HAVING count(*) > 1) s`
      )
      const sharedExamples = yield* run(
        "list shared oids",
        sql<{ readonly oid: number; readonly keys: string }>`
          SELECT t.data AS oid, string_agg(rtrim(t.hash), ',' ORDER BY t.hash) AS keys
          FROM _nice_binary t WHERE t.data IS NOT NULL
          GROUP BY t.data HAVING count(*) > 1 ORDER BY t.data LIMIT ${exampleCount}`
      )
      const total = num(totals?.total)
      const migratedRows = num(totals?.migrated)
      const totalBytes = big(totals?.total_bytes)
      const migratedBytes = big(totals?.migrated_bytes)
      const result: Inventory = {
        total,
        migrated: migratedRows,
        remaining: total - migratedRows,
        totalBytes,
        migratedBytes,
        remainingBytes: totalBytes - migratedBytes,
        histogram,
        unknownSize,
        nullData: { count: num(nullCount?.n), examples: nullExamples.map((r) => r.hash.trim()) },
        dangling: { count: num(danglingCount?.n), examples: danglingExamples.map((r) => ({ key: r.hash.trim(), oid: r.data })) },
        malformedKeys: { count: num(malformedCount?.n), examples: malformedExamples.map((r) => r.hash.trim()) },
        sharedOids: {
          oids: num(shared?.oids),
          rows: num(shared?.rows),
          examples: sharedExamples.map((r) => ({ oid: r.oid, keys: splitKeys(r.keys) }))
        },
        notes: yield* notes(hasSha2)
      }
      return result
    })

  // A random starting key (hash is SHA-1 hex, so uniformly spread) served by the primary key index:
  // a cheap sample that is not always the same first rows.
  const sample = (limit: number) =>
    Effect.gen(function*() {
      const todo = unmigrated(yield* resultColumn)
      const start = Array.from({ length: 40 }, () => Math.floor(Math.random() * 16).toString(16)).join("")
      const query = (from: string) =>
        run(
          "sample rows",
          sql<{ readonly hash: string; readonly data: number; readonly size: bigint | null; readonly mime_type: string | null }>`
            SELECT t.hash, t.data, t.size, t.mime_type FROM _nice_binary t
            WHERE ${todo} AND t.data IS NOT NULL AND t.hash >= ${from}::bpchar
            ORDER BY t.hash LIMIT ${limit}`
        )
      const first = yield* query(start)
      const rows = first.length < limit ? [...first, ...(yield* query("")).slice(0, limit - first.length)] : first
      const unique = [...new Map(rows.map((r) => [r.hash, r])).values()]
      return unique.map((r): Candidate => ({
        key: r.hash,
        oid: r.data,
        size: num(r.size),
        // plan only reads the sample (no PUT, no warning), but a candidate is always header-safe
        contentType: ContentType.headerSafe(r.mime_type).value,
        expectedSha1: r.hash.toLowerCase()
      }))
    })

  /** the rows verify and prune go through: migrated, after `after` in key order, of the shard */
  const migratedAfter = (after: string | undefined, options: { readonly withData: boolean }) =>
    sql`t.sha2 IS NOT NULL AND ${sql.literal(options.withData ? "t.data IS NOT NULL" : "true")} AND ${inShard}
      AND ${after === undefined ? sql.literal("true") : sql`t.hash > ${after}::bpchar`}`

  const migratedPage = (after: string | undefined, limit: number, options: { readonly withData: boolean }) =>
    Effect.gen(function*() {
      if (!(yield* resultColumn)) return []
      const rows = yield* run(
        "list migrated rows",
        sql<{ readonly hash: string; readonly data: number | null; readonly size: bigint | null; readonly sha2: string }>`
          SELECT t.hash, t.data, t.size, t.sha2 FROM _nice_binary t
          WHERE ${migratedAfter(after, options)} ORDER BY t.hash LIMIT ${limit}`
      )
      return rows.map((r): MigratedRow => ({ key: r.hash, oid: r.data, size: num(r.size), sha256: r.sha2 }))
    })

  // the same rows as migratedPage, counted over the same index range
  const migratedTotals = (after: string | undefined, options: { readonly withData: boolean }) =>
    Effect.gen(function*() {
      if (!(yield* resultColumn)) return { rows: 0, bytes: 0 }
      const [totals] = yield* run(
        "count migrated rows",
        sql<{ readonly n: bigint; readonly bytes: string }>`
          SELECT count(*) AS n, coalesce(sum(t.size), 0)::text AS bytes FROM _nice_binary t WHERE ${migratedAfter(after, options)}`
      )
      return { rows: num(totals?.n), bytes: num(totals?.bytes) }
    })

  const unmigratedWithData = (limit: number) =>
    Effect.gen(function*() {
      const todo = unmigrated(yield* resultColumn)
      const [count] = yield* run(
        "count unmigrated rows",
        sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM _nice_binary t WHERE ${todo} AND t.data IS NOT NULL`
      )
      const examples = yield* run(
        "list unmigrated rows",
        sql<{ readonly hash: string; readonly data: number }>`
          SELECT t.hash, t.data FROM _nice_binary t WHERE ${todo} AND t.data IS NOT NULL ORDER BY t.hash LIMIT ${limit}`
      )
      return { count: num(count?.n), examples: examples.map((r) => ({ key: r.hash, oid: r.data })) }
    })

  const references = (oids: ReadonlyArray<number>) =>
    oids.length === 0 ? Effect.succeed([]) : run(
      "find rows referencing large objects",
      sql<{ readonly oid: number; readonly hash: string; readonly present: boolean }>`
        SELECT t.data AS oid, t.hash,
          EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = t.data) AS present
        FROM _nice_binary t WHERE t.data = ANY(${oidArray([...new Set(oids)])})`
    ).pipe(Effect.map((rows) => rows.map((r) => ({ oid: r.oid, key: r.hash, present: r.present }))))

  const release = (rows: ReadonlyArray<MigratedRow>) => {
    const withOid = rows.filter((r): r is MigratedRow & { readonly oid: number } => r.oid !== null)
    if (withOid.length === 0) {
      return Effect.succeed<Released>({ released: [], changed: [...rows], unlinked: [], kept: [], absent: [] })
    }
    return run(
      "release large objects",
      transaction(sql, Effect.gen(function*() {
        // Only rows that still hold what was verified: a row changed since then is left alone.
        const updated = yield* sql<{ readonly hash: string }>`
          UPDATE _nice_binary AS t SET data = NULL
          FROM unnest(${withOid.map((r) => r.key)}::bpchar[], ${oidArray(withOid.map((r) => r.oid))},
                      ${withOid.map((r) => r.sha256)}::bpchar[]) AS u(hash, oid, sha2)
          WHERE t.hash = u.hash AND t.data = u.oid AND t.sha2 = u.sha2
          RETURNING t.hash`
        const done = new Set(updated.map((r) => r.hash))
        const released = withOid.filter((r) => done.has(r.key))
        const oids = [...new Set(released.map((r) => r.oid))]
        // After the update, any row still referencing an oid is one that is not being released now.
        const state = oids.length === 0 ? [] : yield* sql<{ readonly oid: number; readonly present: boolean; readonly referenced_by: string | null }>`
          SELECT o.oid,
            EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = o.oid) AS present,
            (SELECT string_agg(rtrim(t.hash), ',' ORDER BY t.hash) FROM _nice_binary t WHERE t.data = o.oid) AS referenced_by
          FROM unnest(${oidArray(oids)}) AS o(oid)`
        const toUnlink = state.filter((s) => s.present && s.referenced_by === null).map((s) => s.oid)
        if (toUnlink.length > 0) yield* sql`SELECT lo_unlink(o.oid) FROM unnest(${oidArray(toUnlink)}) AS o(oid)`
        const sizeOf = new Map(released.map((r) => [r.oid, r.size]))
        return {
          released,
          changed: rows.filter((r) => !done.has(r.key)),
          unlinked: toUnlink.map((oid) => ({ oid, bytes: sizeOf.get(oid) ?? 0 })),
          kept: state.filter((s) => s.present && s.referenced_by !== null).map((s) => ({
            oid: s.oid,
            referencedBy: splitKeys(s.referenced_by)
          })),
          absent: state.filter((s) => !s.present).map((s) => s.oid)
        } satisfies Released
      }))
    )
  }

  return {
    plan: { inventory, sample },
    afterCopy: {
      migratedPage,
      migratedTotals,
      unmigratedWithData,
      references,
      release,
      // nulling a column of a row needs nothing beyond its primary key, and the grant
      preparePrune: (options: { readonly apply: boolean }) =>
        options.apply
          ? Effect.as(
            Grants.require(sql, run, [{ table, privileges: ["SELECT", "UPDATE"] }], `prune sets data = NULL on the rows of ${table} it releases`),
            []
          )
          : Effect.succeed([]),
      unmigratedReason: "no sha2",
      releaseMeaning: "data = NULL"
    }
  }
}
