/**
 * The `table` profile: any table whose rows reference large objects through an oid column, keyed by one
 * or more columns (`--table`, `--oid-column`, `--key-column`...). The result, the SHA-256 hex, goes to
 * `--sha256-column` (added as `character(64)` when missing); the object's S3 key comes from
 * `--key-template`.
 *
 * Every identifier reaches SQL quoted (`Identifier.quote`), every value as a bound parameter. The key
 * columns are read as text (`::text`) and cast back to their own type (read from the catalog) when
 * bound, so a composite key pages as a row value `(k1, k2) > ($1::t1, $2::t2)` over its index.
 * A key travels through the pipeline as a string: the text of a single column, or a JSON array of the
 * texts of a composite key.
 */
import { Effect, Layer, Result } from "effect"
import { SqlClient } from "effect/sql"
import * as ContentType from "../../domain/ContentType.ts"
import { DatabaseError, DatabaseUnavailable, describeCause, SchemaMismatch } from "../../domain/Errors.ts"
import type { Candidate, RowFailure, Stored } from "../../domain/LargeObject.ts"
import type { MigratedRow, Released } from "../../domain/MigratedObject.ts"
import { fillTemplate, type Shard, type TableProfile } from "../../domain/Profile.ts"
import * as Recorded from "../../domain/Recorded.ts"
import type { RetryPolicy } from "../../core/Retry.ts"
import type { Stats } from "../../core/Stats.ts"
import * as Ddl from "../../postgres/Ddl.ts"
import * as Grants from "../../postgres/Grants.ts"
import { quote, quoteQualified } from "../../domain/Identifier.ts"
import * as Aliases from "../../phases/Aliases.ts"
import { recordedByKey } from "../../postgres/KeyLookup.ts"
import * as LargeObjects from "../../postgres/LargeObjects.ts"
import * as RunKey from "../../postgres/RunKey.ts"
import { type ListedWithWarning, logWarnings } from "../../phases/CopySource.ts"
import type { Inventory } from "../../phases/PlanSource.ts"
import * as ProfileServices from "../../phases/ProfileServices.ts"
import { runner } from "../../postgres/Statement.ts"

/** examples shown per problem */
const exampleCount = 10

type Raw = Record<string, unknown>

export const layer = (
  profile: TableProfile,
  shard: Shard | undefined,
  policy: RetryPolicy
): Layer.Layer<ProfileServices.ProfileServices, never, SqlClient.SqlClient | Stats> =>
  ProfileServices.layer(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const run = yield* runner(policy)
      const query = (operation: string, text: string, params: ReadonlyArray<unknown>) =>
        run(operation, sql.unsafe<Raw>(text, params))

      const shown = profile.table.join(".")
      const table = quoteQualified(profile.table)
      const oid = `t.${quote(profile.oidColumn)}`
      const sha = `t.${quote(profile.sha256Column)}`
      const keys = profile.keyColumns.map((c) => `t.${quote(c)}`)
      const composite = keys.length > 1
      const keySelect = keys.map((k, i) => `${k}::text AS k${i}`).join(", ")
      const keyOrder = keys.join(", ")
      const listable = keys.map((k) => `${k} IS NOT NULL`).join(" AND ")
      const size = profile.sizeColumn !== undefined
        ? `t.${quote(profile.sizeColumn)}::bigint`
        // the large object's own length; lo_open's descriptor ends with the statement's transaction
        : `CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ${oid}::oid)
             THEN lo_lseek64(lo_open(${oid}::oid, ${LargeObjects.invRead}), 0, 2) END`
      const mime = profile.mimeColumn === undefined ? "NULL::text" : `t.${quote(profile.mimeColumn)}::text`

      const encode = (parts: ReadonlyArray<string>): string => (composite ? JSON.stringify(parts) : parts[0]!)
      const decode = (key: string): ReadonlyArray<string> => (composite ? JSON.parse(key) as Array<string> : [key])
      const keyOf = (row: Raw): string => encode(keys.map((_, i) => String(row[`k${i}`])))

      /** the table's columns and their types, or a SchemaMismatch */
      const columns = query(
        "read the table's columns",
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
         FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
        [table]
      ).pipe(Effect.map((rows) => new Map(rows.map((r) => [String(r.name), String(r.type)]))))

      const readable = Grants.once(Grants.require(sql, run, [{ table, privileges: ["SELECT"] }], `reading the rows of ${shown}`))
      const checked = Effect.gen(function*() {
        const cols = yield* columns
        if (cols.size === 0) {
          return yield* new SchemaMismatch({
            table: shown,
            problem: "does not exist (or is not visible to this role)",
            fix: "check --table (schema-qualified, e.g. app.attachments, when the schema is not on the role's search_path) and the database of --pg-url"
          })
        }
        const flagOf = (c: string) =>
          c === profile.oidColumn ? "--oid-column" : c === profile.mimeColumn ? "--mime-column" : c === profile.sizeColumn ? "--size-column" : "--key-column"
        const wanted = [profile.oidColumn, ...profile.keyColumns, profile.mimeColumn, profile.sizeColumn]
          .filter((c): c is string => c !== undefined)
        const missing = wanted.filter((c) => !cols.has(c))
        if (missing.length > 0) {
          return yield* new SchemaMismatch({
            table: shown,
            problem: `lacks column(s) ${missing.map((c) => `${quote(c)} (${flagOf(c)})`).join(", ")}`,
            fix: `name columns it has: ${[...cols.keys()].map(quote).join(", ")}`
          })
        }
        yield* readable
        return cols
      })
      /**
       * The name of an index that makes the key unique, or undefined. Keyset paging and the commit match
       * rows by key: with duplicates, a page boundary between two equal keys skips the second row, and a
       * commit that found one of them would count a vanished other as marked (and move the watermark past
       * it). Sound here: a valid (not a half-built one that may hold duplicates), non-partial (a partial
       * index is unique only among the rows of its predicate) unique index or primary key whose key
       * columns are all among the key columns, with their collations (a column collation that sees more
       * values as equal than the index's would let keyset order see duplicates). NOT NULL is not needed:
       * rows with a NULL key column are never listed (`listable`), and among the others equal keys would
       * be equal, non-NULL index values. Columns of an INCLUDE clause do not count; expression indexes are
       * not considered.
       */
      const uniqueIndex = yield* Effect.cached(
        query(
          "look for a unique index on the key",
          `SELECT i.indexrelid::regclass::text AS name FROM pg_catalog.pg_index i
           WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid AND i.indpred IS NULL
             AND i.indnkeyatts = (
               SELECT count(*) FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE k.ord <= i.indnkeyatts AND a.attname = ANY($2::text[]) AND a.attcollation = i.indcollation[(k.ord - 1)::int])
           ORDER BY i.indisprimary DESC, i.indnkeyatts LIMIT 1`,
          [table, profile.keyColumns]
        ).pipe(Effect.map(([r]) => (r === undefined ? undefined : String(r.name))))
      )
      const keyColumnList = profile.keyColumns.map(quote).join(", ")
      const notUnique = () =>
        new SchemaMismatch({
          table: shown,
          problem: `no primary key or unique index makes (${keyColumnList}) unique: rows with equal keys would be ` +
            "skipped or counted as migrated when they are not",
          fix: `if the key is unique, create the index, as the table's owner: CREATE UNIQUE INDEX CONCURRENTLY ON ${table} ` +
            `(${keyColumnList}); otherwise give --key-column(s) that are unique (e.g. the primary key's)`
        })
      /** `checked`, and the key unique: what everything that pages or marks by key needs */
      const keyed = Effect.gen(function*() {
        const cols = yield* checked
        if ((yield* uniqueIndex) === undefined) return yield* notUnique()
        return cols
      })

      // key column types, to cast bound key values back (catalog output, valid SQL type names)
      const keyTypes = yield* Effect.cached(
        Effect.map(checked, (cols) => profile.keyColumns.map((c) => cols.get(c)!))
      )

      const shardFilter = (next: number): { readonly text: string; readonly params: ReadonlyArray<unknown> } =>
        shard === undefined ? { text: "", params: [] } : {
          text: ` AND abs(hashtext(ROW(${keyOrder})::text)::bigint) % $${next} = $${next + 1}`,
          params: [shard.count, shard.index]
        }

      const prepare = Effect.gen(function*() {
        const cols = yield* keyed
        yield* Grants.require(sql, run, [{ table, privileges: ["SELECT", "UPDATE"] }], `the copy reads the rows of ${shown} and records ${quote(profile.sha256Column)}`)
        if (!cols.has(profile.sha256Column)) {
          // a bounded wait for the table's lock: the application's queries queue behind a waiting ALTER
          yield* Ddl.alter(sql, {
            relation: table,
            shown,
            what: `add column ${quote(profile.sha256Column)}`,
            statements: [`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${quote(profile.sha256Column)} character(64)`]
          }).pipe(
            Effect.catchTag("SqlError", (error) =>
              Effect.fail(
                new DatabaseUnavailable({
                  problem: `cannot add column ${quote(profile.sha256Column)} to ${shown}: ${describeCause(error)}`,
                  fix: `run, as the table's owner: ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${quote(profile.sha256Column)} ` +
                    "character(64); then run lo-migrate again"
                })
              ))
          )
          yield* Effect.logInfo(`added column ${quote(profile.sha256Column)} character(64) to ${shown}`)
        }
      })

      const count = Effect.gen(function*() {
        const s = shardFilter(1)
        const [r] = yield* query(
          "count rows",
          `SELECT count(*) FILTER (WHERE ${sha} IS NULL) AS remaining, count(*) AS total
           FROM ${table} AS t WHERE ${listable}${s.text}`,
          s.params
        )
        return { remaining: Number(r?.remaining ?? 0), total: Number(r?.total ?? 0) }
      })

      const afterFilter = (after: string | undefined, types: ReadonlyArray<string>) =>
        after === undefined ? { text: "", params: [] as ReadonlyArray<unknown> } : {
          text: ` AND (${keyOrder}) > (${types.map((t, i) => `$${i + 1}::${t}`).join(", ")})`,
          params: decode(after)
        }

      const toListed = (row: Raw): ListedWithWarning => {
        const key = keyOf(row)
        const rowOid = row.oid === null ? null : Number(row.oid)
        if (rowOid === null) {
          return [{ key, row: Result.fail<RowFailure>({ key, oid: null, reason: "null-data", detail: `${profile.oidColumn} is NULL: the row has no large object` }) }, undefined]
        }
        // a value that cannot be sent as a header is that row's (warned) change, never the run's end
        const { contentType, warning } = ContentType.forRow(key, typeof row.mime === "string" ? row.mime : null)
        return [{
          key,
          row: Result.succeed<Candidate>({
            key,
            oid: rowOid,
            // a NULL --size-column is unknown, never 0 (without it the size is the object's own length)
            size: row.size === null ? 0 : Number(row.size),
            ...(row.size === null ? { sizeUnknown: true } : {}),
            contentType,
            expectedSha1: undefined
          })
        }, warning]
      }

      // rows sharing a large object (and claiming the same size) within a page are read once, each
      // gets its own object key and mark (pipeline/Aliases.ts)
      const page = Aliases.pager({ list: (after: string | undefined, limit: number) => listFrom(after, limit) })

      const listFrom = (after: string | undefined, limit: number) =>
        Effect.gen(function*() {
          const types = yield* keyTypes.pipe(Effect.orDie)
          const a = afterFilter(after, types)
          const s = shardFilter(a.params.length + 1)
          const rows = yield* query(
            "list rows",
            `SELECT ${keySelect}, ${oid}::oid AS oid, ${size} AS size, ${mime} AS mime
             FROM ${table} AS t
             WHERE ${sha} IS NULL AND ${listable}${a.text}${s.text}
             ORDER BY ${keyOrder} LIMIT $${a.params.length + s.params.length + 1}`,
            [...a.params, ...s.params, limit]
          )
          return yield* logWarnings(rows.map(toListed))
        })

      // One statement per chunk; a row is marked only if it still references the object that was read
      // (marked with the old content's SHA-256, prune would unlink the new object) and holds no other result.
      const commit = (chunk: ReadonlyArray<Stored>) =>
        Effect.gen(function*() {
          const types = yield* keyTypes.pipe(Effect.orDie)
          const parts = chunk.map((s) => decode(s.candidate.key))
          const n = keys.length
          const rows = yield* query(
            "record sha256",
            `UPDATE ${table} AS t SET ${quote(profile.sha256Column)} = u.sha
             FROM unnest(${types.map((ty, i) => `$${i + 1}::${ty}[]`).join(", ")}, $${n + 1}::oid[], $${n + 2}::text[])
               AS u(${keys.map((_, i) => `k${i}`).join(", ")}, oid, sha)
             WHERE ${keys.map((k, i) => `${k} = u.k${i}`).join(" AND ")} AND ${oid} = u.oid AND (${sha} IS NULL OR ${sha}::text = u.sha)
             RETURNING ${keySelect}`,
            [...keys.map((_, i) => parts.map((p) => p[i])), LargeObjects.oidArray(chunk.map((s) => s.candidate.oid as number)), chunk.map((s) => s.sha256)]
          )
          const marked = new Set(rows.map(keyOf))
          const unmarked = chunk.filter((s) => !marked.has(s.candidate.key))
          if (unmarked.length === 0) return { vanished: [] }
          // why not: gone, or holding something else now (only a report: read after the commit)
          const now = yield* query(
            "look at rows not marked",
            `SELECT ${keySelect}, ${oid}::oid AS oid, ${sha}::text AS sha FROM ${table} AS t
             JOIN unnest(${types.map((ty, i) => `$${i + 1}::${ty}[]`).join(", ")}) AS u(${keys.map((_, i) => `k${i}`).join(", ")})
               ON ${keys.map((k, i) => `${k} = u.k${i}`).join(" AND ")}`,
            keys.map((_, i) => unmarked.map((s) => decode(s.candidate.key)[i]))
          )
          const byKey = new Map(now.map((r) => [keyOf(r), r]))
          const changed = unmarked.flatMap((s) => {
            const row = byKey.get(s.candidate.key)
            if (row === undefined) return []
            const rowOid = row.oid === null ? null : Number(row.oid)
            const detail = rowOid !== s.candidate.oid
              ? `${quote(profile.oidColumn)} is now oid ${rowOid ?? "NULL"}, not ${s.candidate.oid} as read: not marked ` +
                `(its object ${s.key} is in S3; the next run reads the row again)`
              : `${quote(profile.sha256Column)} is already ${String(row.sha).trim()}, not ${s.sha256}: left as it is`
            return [{ stored: s, detail }]
          })
          return { vanished: unmarked.filter((s) => !byKey.has(s.candidate.key)), changed }
        })

      // a manifest's row key may come from another table's staging run: one that is not this table's key
      // shape (a JSON array of one text per key column, when composite) is NotAKey, never a crash
      const keyProblem = (key: string): string | undefined => {
        if (!composite) return undefined
        let parsed: unknown
        try {
          parsed = JSON.parse(key)
        } catch {
          return `expected a JSON array of ${keys.length} texts (${profile.keyColumns.map(quote).join(", ")})`
        }
        return Array.isArray(parsed) && parsed.length === keys.length && parsed.every((p) => typeof p === "string")
          ? undefined
          : `expected a JSON array of ${keys.length} texts (${profile.keyColumns.map(quote).join(", ")})`
      }
      const readRecorded = (wanted: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const types = yield* keyTypes.pipe(Effect.orDie)
          const parts = wanted.map(decode)
          const rows = yield* query(
            "read sha256",
            `SELECT ${keySelect}, ${sha}::text AS sha FROM ${table} AS t
             JOIN unnest(${types.map((ty, i) => `$${i + 1}::${ty}[]`).join(", ")}) AS u(${keys.map((_, i) => `k${i}`).join(", ")})
               ON ${keys.map((k, i) => `${k} = u.k${i}`).join(" AND ")}`,
            keys.map((_, i) => parts.map((p) => p[i]))
          )
          return new Map(rows.map((r) => [keyOf(r), r.sha === null ? Recorded.notMigrated : Recorded.sha256(String(r.sha))]))
        })
      const recorded = (wanted: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const bad = new Map<string, Recorded.Recorded>()
          for (const key of wanted) {
            const problem = keyProblem(key)
            if (problem !== undefined) bad.set(key, Recorded.notAKey(problem))
          }
          // a value that does not fit its column's type (text for an integer key) fails alone
          const found = yield* recordedByKey(wanted.filter((k) => !bad.has(k)), readRecorded)
          return new Map([...found, ...bad])
        })

      /** the rows verify and prune go through: migrated, after `after` in key order, of the shard */
      const migratedAfter = (cols: ReadonlyMap<string, string>, after: string | undefined, options: { readonly withData: boolean }) => {
        const a = afterFilter(after, profile.keyColumns.map((c) => cols.get(c)!))
        const s = shardFilter(a.params.length + 1)
        return {
          text: `${sha} IS NOT NULL AND ${listable}${options.withData ? ` AND ${oid} IS NOT NULL` : ""}${a.text}${s.text}`,
          params: [...a.params, ...s.params]
        }
      }

      const migratedPage = (after: string | undefined, limit: number, options: { readonly withData: boolean }) =>
        Effect.gen(function*() {
          const cols = yield* keyed
          if (!cols.has(profile.sha256Column)) return []
          const m = migratedAfter(cols, after, options)
          const rows = yield* query(
            "list migrated rows",
            `SELECT ${keySelect}, ${oid}::oid AS oid, ${size} AS size, ${sha}::text AS sha
             FROM ${table} AS t WHERE ${m.text} ORDER BY ${keyOrder} LIMIT $${m.params.length + 1}`,
            [...m.params, limit]
          )
          return rows.map((r): MigratedRow => {
            const key = keyOf(r)
            const rowOid = r.oid === null ? null : Number(r.oid)
            const sha256 = String(r.sha)
            return {
              key,
              oid: rowOid,
              size: r.size === null ? undefined : Number(r.size),
              sha256,
              objectKey: fillTemplate(profile.keyTemplate, { sha256: sha256.trim().toLowerCase(), key: decode(key), oid: rowOid })
            }
          })
        })

      // the same rows as migratedPage; their bytes only with --size-column (without it, each size is an
      // lo_open of the large object: not a cheap count)
      const migratedTotals = (after: string | undefined, options: { readonly withData: boolean }) =>
        Effect.gen(function*() {
          const cols = yield* keyed
          if (!cols.has(profile.sha256Column)) return { rows: 0, bytes: 0 }
          const m = migratedAfter(cols, after, options)
          const [n] = yield* query(
            "count migrated rows",
            `SELECT count(*) AS n, ${profile.sizeColumn === undefined ? "NULL" : `coalesce(sum(${size}), 0)::text`} AS bytes
             FROM ${table} AS t WHERE ${m.text}`,
            m.params
          )
          return { rows: Number(n?.n ?? 0), bytes: n?.bytes === null || n?.bytes === undefined ? undefined : Number(n.bytes) }
        })

      // prune: the same checks as nice2's, on this table only (other tables referencing the same large
      // objects are not known to lo-migrate: see README)
      const unmigratedWithData = (limit: number) =>
        Effect.gen(function*() {
          const cols = yield* checked
          const todo = cols.has(profile.sha256Column) ? `${sha} IS NULL` : "true"
          const s = shardFilter(1)
          const [n] = yield* query(
            "count unmigrated rows",
            `SELECT count(*) AS n FROM ${table} AS t WHERE ${todo} AND ${oid} IS NOT NULL AND ${listable}${s.text}`,
            s.params
          )
          const examples = yield* query(
            "list unmigrated rows",
            `SELECT ${keySelect}, ${oid}::oid AS oid FROM ${table} AS t
             WHERE ${todo} AND ${oid} IS NOT NULL AND ${listable}${s.text} ORDER BY ${keyOrder} LIMIT $${s.params.length + 1}`,
            [...s.params, limit]
          )
          return { count: Number(n?.n ?? 0), examples: examples.map((r) => ({ key: keyOf(r), oid: Number(r.oid) })) }
        })

      const referencing = (oids: ReadonlyArray<number>) =>
        query(
          "find rows referencing large objects",
          `SELECT ${keySelect}, ${oid}::oid AS oid,
             EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ${oid}::oid) AS present
           FROM ${table} AS t WHERE ${oid}::oid = ANY($1::oid[])`,
          [[...new Set(oids)]]
        ).pipe(Effect.map((rows) => rows.map((r) => ({ oid: Number(r.oid), key: keyOf(r), present: r.present === true }))))

      const references = (oids: ReadonlyArray<number>) => (oids.length === 0 ? Effect.succeed([]) : referencing(oids))

      const release = (rows: ReadonlyArray<MigratedRow>) => {
        const withOid = rows.filter((r): r is MigratedRow & { readonly oid: number } => r.oid !== null)
        if (withOid.length === 0) {
          return Effect.succeed<Released>({ released: [], changed: [...rows], unlinked: [], kept: [], absent: [] })
        }
        return Effect.gen(function*() {
          const types = yield* keyTypes.pipe(Effect.orDie)
          const n = keys.length
          const parts = withOid.map((r) => decode(r.key))
          return yield* run(
            "release large objects",
            sql.withTransaction(Effect.gen(function*() {
              // only rows that still hold what was verified: a row changed since then is left alone
              const updated = yield* sql.unsafe<Raw>(
                `UPDATE ${table} AS t SET ${quote(profile.oidColumn)} = NULL
                 FROM unnest(${types.map((ty, i) => `$${i + 1}::${ty}[]`).join(", ")}, $${n + 1}::oid[], $${n + 2}::text[])
                   AS u(${keys.map((_, i) => `k${i}`).join(", ")}, oid, sha)
                 WHERE ${keys.map((k, i) => `${k} = u.k${i}`).join(" AND ")} AND ${oid} = u.oid AND ${sha}::text = u.sha
                 RETURNING ${keySelect}`,
                [...keys.map((_, i) => parts.map((p) => p[i])), LargeObjects.oidArray(withOid.map((r) => r.oid)), withOid.map((r) => r.sha256)]
              )
              const done = new Set(updated.map(keyOf))
              const released = withOid.filter((r) => done.has(r.key))
              const oids = [...new Set(released.map((r) => r.oid))]
              const present = oids.length === 0 ? [] : yield* sql.unsafe<Raw>(
                `SELECT o.oid, EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = o.oid) AS present
                 FROM unnest($1::oid[]) AS o(oid)`,
                [LargeObjects.oidArray(oids)]
              )
              // after the update, a row still referencing an oid is one that is not being released now
              const still = oids.length === 0 ? [] : yield* sql.unsafe<Raw>(
                `SELECT ${keySelect}, ${oid}::oid AS oid FROM ${table} AS t WHERE ${oid}::oid = ANY($1::oid[])`,
                [LargeObjects.oidArray(oids)]
              )
              const referencedBy = (o: number) => still.filter((r) => Number(r.oid) === o).map(keyOf)
              const state = present.map((p) => ({ oid: Number(p.oid), present: p.present === true, by: referencedBy(Number(p.oid)) }))
              const toUnlink = state.filter((x) => x.present && x.by.length === 0).map((x) => x.oid)
              if (toUnlink.length > 0) yield* sql.unsafe(`SELECT lo_unlink(o.oid) FROM unnest($1::oid[]) AS o(oid)`, [LargeObjects.oidArray(toUnlink)])
              const sizeOf = new Map(released.map((r) => [r.oid, r.size ?? 0]))
              return {
                released,
                changed: rows.filter((r) => !done.has(r.key)),
                unlinked: toUnlink.map((o) => ({ oid: o, bytes: sizeOf.get(o) ?? 0 })),
                kept: state.filter((x) => x.present && x.by.length > 0).map((x) => ({ oid: x.oid, referencedBy: x.by })),
                absent: state.filter((x) => !x.present).map((x) => x.oid)
              } satisfies Released
            }))
          )
        })
      }

      // plan: one scan computes each row's state and size; without --size-column the size is the large
      // object's own length, its descriptor closed at once (LargeObjects.lengthJoin: linear in the rows)
      const inventory = (sizeBounds: ReadonlyArray<number>) =>
        Effect.gen(function*() {
          const cols = yield* checked
          const hasSha = cols.has(profile.sha256Column)
          const todo = hasSha ? `${sha} IS NULL` : "true"
          const measured = profile.sizeColumn !== undefined
            ? { size, join: "" }
            : { size: "len.size", join: LargeObjects.lengthJoin(`${oid}::oid`, "len") }
          const thresholds = sizeBounds.map((b) => b + 1)
          const groups = yield* query(
            "count rows and bytes",
            `WITH r AS MATERIALIZED (SELECT ${todo} AS todo, ${measured.size} AS size FROM ${table} AS t ${measured.join} WHERE ${listable})
             SELECT r.todo, width_bucket(r.size, $1::int8[]) AS bucket, count(*) AS n, coalesce(sum(r.size), 0)::text AS bytes
             FROM r GROUP BY 1, 2`,
            [thresholds]
          )
          const sum = (rows: ReadonlyArray<Raw>) =>
            rows.reduce<{ n: number; bytes: bigint }>((acc, r) => ({ n: acc.n + Number(r.n), bytes: acc.bytes + BigInt(String(r.bytes)) }), { n: 0, bytes: 0n })
          const all = sum(groups)
          const todoRows = groups.filter((r) => r.todo === true)
          const done = sum(groups.filter((r) => r.todo !== true))
          const histogram = [...sizeBounds, undefined].map((upTo, i) => {
            const b = todoRows.find((r) => r.bucket !== null && Number(r.bucket) === i)
            return { upTo, objects: Number(b?.n ?? 0), bytes: BigInt(String(b?.bytes ?? 0)) }
          })
          const unknownSize = Number(todoRows.find((r) => r.bucket === null)?.n ?? 0)
          const examplesOf = (operation: string, where: string) =>
            Effect.gen(function*() {
              const [n] = yield* query(`count ${operation}`, `SELECT count(*) AS n FROM ${table} AS t WHERE ${where}`, [])
              const rows = yield* query(
                `list ${operation}`,
                `SELECT ${keySelect}, ${oid}::oid AS oid FROM ${table} AS t WHERE ${where} ORDER BY ${keyOrder} LIMIT ${exampleCount}`,
                []
              )
              return { count: Number(n?.n ?? 0), rows }
            })
          const nullData = yield* examplesOf("NULL oids", `${todo} AND ${listable} AND ${oid} IS NULL`)
          const dangling = yield* examplesOf(
            "dangling oids",
            `${todo} AND ${listable} AND ${oid} IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ${oid}::oid)`
          )
          // a row with a NULL key column is never listed, so never migrated
          const nullKeys = yield* examplesOf("NULL keys", `${todo} AND NOT (${listable})`)
          const [shared] = yield* query(
            "count shared oids",
            `SELECT count(*) AS oids, coalesce(sum(s.n), 0)::text AS rows
             FROM (SELECT count(*) AS n FROM ${table} AS t WHERE ${oid} IS NOT NULL AND ${listable} GROUP BY ${oid} HAVING count(*) > 1) s`,
            []
          )
          const sharedExamples = yield* query(
            "list shared oids",
            `SELECT ${oid}::oid AS oid FROM ${table} AS t WHERE ${oid} IS NOT NULL AND ${listable}
             GROUP BY ${oid} HAVING count(*) > 1 ORDER BY ${oid} LIMIT ${exampleCount}`,
            []
          )
          const sharing = yield* referencing(sharedExamples.map((r) => Number(r.oid)))
          const notes: Array<string> = []
          if (!hasSha) {
            notes.push(
              `column ${quote(profile.sha256Column)} does not exist yet: every row counts as not migrated; migrate adds it (needs the table's owner)`
            )
          }
          if (profile.sizeColumn === undefined) {
            notes.push("sizes read from the large objects themselves (lo_lseek64); dangling and NULL oids have no size")
          }
          if ((yield* uniqueIndex) === undefined) notes.push(`migrate would refuse: ${notUnique().problem}; to go on: ${notUnique().fix}`)
          const result: Inventory = {
            total: all.n,
            migrated: done.n,
            remaining: all.n - done.n,
            totalBytes: all.bytes,
            migratedBytes: done.bytes,
            remainingBytes: all.bytes - done.bytes,
            histogram,
            unknownSize,
            nullData: { count: nullData.count, examples: nullData.rows.map(keyOf) },
            dangling: { count: dangling.count, examples: dangling.rows.map((r) => ({ key: keyOf(r), oid: Number(r.oid) })) },
            malformedKeys: { count: nullKeys.count, examples: nullKeys.rows.map((r) =>
                `${keys.map((_, i) => (r[`k${i}`] === null ? "NULL" : String(r[`k${i}`]))).join(",")} (oid ${r.oid ?? "NULL"})`
              ) },
            sharedOids: {
              oids: Number(shared?.oids ?? 0),
              rows: Number(shared?.rows ?? 0),
              examples: sharedExamples.map((r) => ({
                oid: Number(r.oid),
                keys: sharing.filter((x) => x.oid === Number(r.oid)).map((x) => x.key)
              }))
            },
            notes
          }
          return result
        })

      // rows to migrate in random order; the size (an lo_open each without --size-column) is computed
      // only for the rows picked, outside the sorted subquery
      const sample = (limit: number) =>
        Effect.gen(function*() {
          const cols = yield* checked
          const todo = cols.has(profile.sha256Column) ? `${sha} IS NULL` : "true"
          const keyCols = profile.keyColumns.map(quote)
          const rows = yield* query(
            "sample rows",
            `SELECT ${keySelect}, ${oid}::oid AS oid, ${size} AS size, ${mime} AS mime
             FROM (SELECT * FROM ${table} AS t
                   WHERE ${todo} AND ${listable} AND ${oid} IS NOT NULL ORDER BY random() LIMIT $1) AS t
             ORDER BY ${keyCols.map((c) => `t.${c}`).join(", ")}`,
            [limit]
          )
          // plan only reads the sample: no warning
          return rows.map(toListed).flatMap(([l]) => Result.isSuccess(l.row) ? [l.row.success] : [])
        })

      // NOT NULL only: equal contents in a generic table are legitimate duplicates (two rows may hold the
      // same file), so no unique index on the result column
      const finalize = Effect.gen(function*() {
        const cols = yield* checked
        if (!cols.has(profile.sha256Column)) {
          return yield* new SchemaMismatch({
            table: shown,
            problem: `has no column ${quote(profile.sha256Column)} (--sha256-column)`,
            fix: "run lo-migrate migrate first (it adds the column), or give the --sha256-column it used"
          })
        }
        const [open] = yield* query("count unmigrated rows", `SELECT count(*) AS n FROM ${table} AS t WHERE ${sha} IS NULL`, [])
        const n = Number(open?.n ?? 0)
        if (n > 0) {
          const examples = yield* query(
            "list unmigrated rows",
            `SELECT ${keySelect}, ${oid}::oid AS oid FROM ${table} AS t WHERE ${sha} IS NULL ORDER BY ${keyOrder} LIMIT 10`,
            []
          )
          const named = examples.map((r) =>
            `${keys.map((_, i) => (r[`k${i}`] === null ? "NULL" : String(r[`k${i}`]))).join(",")} (oid ${r.oid ?? "NULL"})`
          )
          return yield* new SchemaMismatch({
            table: shown,
            problem: `${n} row(s) still have no ${quote(profile.sha256Column)} (e.g. ${named.join("; ")}${n > named.length ? "; ..." : ""}): ` +
              "cannot add NOT NULL",
            fix: "run lo-migrate migrate (without --finalize) until it exits 0, then --finalize again; rows with a NULL key " +
              "column are never migrated: fill or delete them"
          })
        }
        yield* Ddl.alter(sql, {
          relation: table,
          shown,
          what: `add NOT NULL to ${quote(profile.sha256Column)}`,
          statements: [`ALTER TABLE ${table} ALTER COLUMN ${quote(profile.sha256Column)} SET NOT NULL`]
        }).pipe(Effect.catchTag("SqlError", (cause) => Effect.fail(new DatabaseError({ operation: "add NOT NULL", cause }))))
        yield* Effect.logInfo(`${shown}: ${quote(profile.sha256Column)} is NOT NULL now (no unique index: rows may share a content)`)
      })

      return {
        copy: {
        table: shown,
        // an earlier version's watermark (the quoted table name) does not say which key columns it is of
        runKey: RunKey.resolve(sql, run, {
          relation: table,
          keyColumns: profile.keyColumns,
          result: profile.sha256Column,
          legacy: { name: table, adopt: false }
        }),
        shard,
        objectKey: (candidate, sha256) => fillTemplate(profile.keyTemplate, { sha256, key: decode(candidate.key), oid: candidate.oid }),
        prepare,
        count,
        page,
        commit,
        recorded,
        finalize
        },
        plan: { inventory, sample },
        afterCopy: {
          migratedPage,
          migratedTotals,
          unmigratedWithData,
          references,
          release,
          // nulling a column of a row needs nothing beyond its key, and the grant
          preparePrune: (options: { readonly apply: boolean }) =>
            options.apply
              ? Effect.as(
                Grants.require(sql, run, [{ table, privileges: ["SELECT", "UPDATE"] }], `prune sets ${quote(profile.oidColumn)} = NULL on the rows it releases`),
                []
              )
              : Effect.succeed([]),
          unmigratedReason: `no ${quote(profile.sha256Column)}`,
          releaseMeaning: `${quote(profile.oidColumn)} = NULL`
        }
      }
    })
  )
