/**
 * The relstorage profile after the copy: what `plan`, `verify`, `prune` and `migrate --finalize` ask of
 * `blob_chunk` (the source database) and `blob_state` (the same database, or another one with
 * `--dest-pg-url`). Everything reads only, except `release` (deletes a blob's chunks and unlinks its
 * large objects, in one transaction of the source database, only with an index on blob_chunk(chunk):
 * ChunkIndex.ts), `preparePrune` (creates that index when asked) and `finalize` (rewrites s3_key values an
 * older lo-migrate stored with the prefix, drops that version's CHECK constraint; adds none: zodb-pgjsonb
 * writes blob_state too, and its inline upsert leaves an old s3_key in place).
 *
 * s3_key holds zodb-pgjsonb's key, without --s3-prefix; the bucket key is the prefix + "/" + s3_key
 * (BlobKey.ts `bucketKeyOf`), as zodb-pgjsonb's S3 client forms it.
 *
 * Across two databases nothing can be joined: blobs are matched by paging both tables in key order
 * ((zoid, tid), 1000 at a time) and merging, or by looking a page of keys up on the other side, so
 * memory stays bounded whatever the number of blobs.
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, type MissingGrant, SchemaMismatch, type TableBusy } from "../../domain/Errors.ts"
import type { Candidate } from "../../domain/LargeObject.ts"
import { bytesOfOid, type MigratedRow, oidsOf, type Released } from "../../domain/MigratedObject.ts"
import type { RelStorageProfile, Shard } from "../../domain/Profile.ts"
import * as LargeObjects from "../../postgres/LargeObjects.ts"
import { invRead, oidArray } from "../../postgres/LargeObjects.ts"
import type { CopySource } from "../../phases/CopySource.ts"
import type { Examples, Inventory } from "../../phases/PlanSource.ts"
import type { ProfileParts } from "../../phases/ProfileServices.ts"
import { alter } from "../../postgres/Ddl.ts"
import { transaction } from "../../postgres/Transaction.ts"
import { afterKey, bucketKeyOf, bucketKeySql, keyArrays, keyOf, recordedPattern, sqlPrefix } from "./BlobKey.ts"
import * as ChunkIndex from "./ChunkIndex.ts"
import * as Grants from "../../postgres/Grants.ts"

/** examples shown per problem */
const exampleCount = 10
/** keys per page when two databases are matched */
const mergePage = 1000
/** what verify and prune name as the "object" of an inline blob */
export const inlineObject = "blob_state.data"
/**
 * the CHECK ((data IS NULL) <> (s3_key IS NULL)) that `--finalize` of earlier versions added: zodb-pgjsonb's
 * inline upsert (`SET blob_size, data`) breaks it (an old s3_key stays), so finalize drops it now
 */
export const oldConstraint = "blob_state_data_xor_s3_key"
/** s3_key values not in zodb-pgjsonb's form (an older lo-migrate's, prefix included) */
const legacyKeys = `s3_key IS NOT NULL AND s3_key !~ '${recordedPattern}'`

type Raw = Record<string, unknown>
type Query = (operation: string, text: string, params: ReadonlyArray<unknown>) => Effect.Effect<ReadonlyArray<Raw>, DatabaseError>
type Run = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) => Effect.Effect<A, DatabaseError>

export interface Context {
  readonly profile: RelStorageProfile
  readonly shard: Shard | undefined
  /** blob_state lives next to blob_chunk (no --dest-pg-url) */
  readonly sameDatabase: boolean
  /** the source database's client (blob_chunk, the large objects) */
  readonly sql: SqlClient.SqlClient
  readonly run: Run
  /** a statement on the source database */
  readonly query: Query
  /** a statement on blob_state's database (the source one without --dest-pg-url) */
  readonly destQuery: Query
  /** blob_state's database's client (for schema changes) */
  readonly destSql: Effect.Effect<SqlClient.SqlClient, DatabaseError>
  /** which of `keys` have a blob_state row */
  readonly recorded: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlySet<string>, DatabaseError>
  /** blob_chunk's primary key columns; fails when the table is missing */
  readonly blobChunk: Effect.Effect<ReadonlyArray<string>, SchemaMismatch | MissingGrant | DatabaseError>
  /** the `--shard` condition on `c.zoid, c.tid`, numbered from `$next` */
  readonly shardFilter: (next: number) => { readonly text: string; readonly params: ReadonlyArray<unknown> }
}

type Lifecycle = Pick<ProfileParts, "plan" | "afterCopy"> & Pick<CopySource["Service"], "finalize">

type Key = readonly [bigint, bigint]
const parse = (key: string): Key => {
  const [zoid, tid] = key.split("/")
  return [BigInt(zoid!), BigInt(tid!)]
}
const compare = (a: Key, b: Key): number => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0)
const present = (oid: string) => `EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ${oid})`
const nums = (v: unknown): ReadonlyArray<number> => ((v ?? []) as ReadonlyArray<string | number | bigint | null>).flatMap((x) => (x === null ? [] : [Number(x)]))

export const make = (ctx: Context): Lifecycle => {
  const { destQuery, profile, query, recorded, run, sameDatabase, shardFilter, sql } = ctx

  const stateExists = (q: Query) =>
    Effect.map(q("look for blob_state", "SELECT to_regclass('blob_state') IS NOT NULL AS present", []), ([r]) => r?.present === true)

  /** the chunks (oids in chunk_num order, and their lengths) of each of `keys` that still has some */
  const chunksOf = (keys: ReadonlyArray<string>) =>
    keys.length === 0 ? Effect.succeed(new Map<string, { oids: ReadonlyArray<number>; sizes: ReadonlyArray<number> }>()) : Effect.map(
      query(
        "read blob chunks",
        `SELECT c.zoid::text AS zoid, c.tid::text AS tid,
           array_agg(c.chunk::bigint ORDER BY c.chunk_num) FILTER (WHERE c.chunk IS NOT NULL) AS oids,
           array_agg(CASE WHEN ${present("c.chunk")} THEN lo_lseek64(lo_open(c.chunk, ${invRead}), 0, 2) ELSE 0 END
             ORDER BY c.chunk_num) FILTER (WHERE c.chunk IS NOT NULL) AS sizes
         FROM blob_chunk c JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON c.zoid = u.zoid AND c.tid = u.tid
         GROUP BY c.zoid, c.tid`,
        keyArrays(keys)
      ),
      (rows) => new Map(rows.map((r) => [keyOf(r), { oids: nums(r.oids), sizes: nums(r.sizes) }]))
    )

  /** blob_state rows whose s3_key is not zodb-pgjsonb's form: count and a few */
  const legacyRows = Effect.gen(function*() {
    const [n] = yield* destQuery("count s3_key values with a prefix", `SELECT count(*) AS n FROM blob_state WHERE ${legacyKeys}`, [])
    const count = Number(n?.n ?? 0)
    const examples = count === 0 ? [] : yield* destQuery(
      "list s3_key values with a prefix",
      `SELECT s3_key FROM blob_state WHERE ${legacyKeys} ORDER BY zoid, tid LIMIT 3`,
      []
    )
    return { count, examples: examples.map((r) => String(r.s3_key)) }
  })
  const legacyNote = (legacy: { readonly count: number; readonly examples: ReadonlyArray<string> }) =>
    `${legacy.count} blob_state row(s) hold their S3 key with a prefix (e.g. ${legacy.examples.join(", ")}), as lo-migrate ` +
    "wrote them before it stored zodb-pgjsonb's key: they are checked at that key as it is, but zodb-pgjsonb adds its own " +
    "s3-prefix to s3_key and will not find them; migrate --finalize with the --s3-prefix they were written with rewrites them"

  /** which of `keys` have a blob_state row */
  // verify, prune, finalize: blob_state rows in key order, each with its chunks as they are now. S3 blobs
  // are checked at their s3_key; inline ones by the length and SHA-256 of `data`, computed by PostgreSQL.
  // Pages stay full (Verification ends at a short page): rows without chunks are skipped for prune.
  const migratedPage = (from: string | undefined, limit: number, options: { readonly withData: boolean }) =>
    Effect.gen(function*() {
      if (!(yield* stateExists(destQuery))) return []
      if (from === undefined) {
        const legacy = yield* legacyRows
        if (legacy.count > 0) yield* Effect.logWarning(legacyNote(legacy))
      }
      const out: Array<MigratedRow> = []
      let position = from
      while (out.length < limit) {
        const a = afterKey(position, 1)
        const s = shardFilter(a.params.length + 1)
        const rows = yield* destQuery(
          "list migrated blobs",
          `SELECT c.zoid::text AS zoid, c.tid::text AS tid, c.blob_size::text AS size, c.s3_key,
             CASE WHEN c.s3_key IS NULL THEN length(c.data) END AS inline_length,
             CASE WHEN c.s3_key IS NULL THEN encode(sha256(c.data), 'hex') END AS inline_sha256
           FROM blob_state c WHERE true${a.text}${s.text}
           ORDER BY c.zoid, c.tid LIMIT $${a.params.length + s.params.length + 1}`,
          [...a.params, ...s.params, limit]
        )
        const chunks = yield* chunksOf(rows.map(keyOf))
        for (const r of rows) {
          const key = keyOf(r)
          position = key
          const c = chunks.get(key)
          if (options.withData && (c === undefined || c.oids.length === 0)) continue
          const oids = c?.oids ?? []
          const s3 = r.s3_key !== null && r.s3_key !== undefined
          out.push({
            key,
            oid: oids[0] ?? null,
            oids,
            oidSizes: c?.sizes ?? [],
            size: Number(r.size),
            sha256: undefined,
            objectKey: s3 ? bucketKeyOf(profile.s3Prefix, String(r.s3_key)) : inlineObject,
            ...(s3 ? {} : {
              inline: {
                length: r.inline_length === null ? null : Number(r.inline_length),
                sha256: r.inline_sha256 === null ? null : String(r.inline_sha256)
              }
            })
          })
          if (out.length === limit) break
        }
        if (rows.length < limit) break
      }
      return out
    })

  // the rows migratedPage lists, counted in blob_state; for prune (only blobs that still have chunks) only
  // when blob_chunk is in the same database: across two, nothing counts them in one statement
  const migratedTotals = (from: string | undefined, options: { readonly withData: boolean }) =>
    Effect.gen(function*() {
      if (options.withData && !sameDatabase) return { rows: undefined, bytes: undefined }
      if (!(yield* stateExists(destQuery))) return { rows: 0, bytes: 0 }
      const a = afterKey(from, 1)
      const s = shardFilter(a.params.length + 1)
      const withChunks = options.withData
        ? " AND EXISTS (SELECT 1 FROM blob_chunk b WHERE b.zoid = c.zoid AND b.tid = c.tid AND b.chunk IS NOT NULL)"
        : ""
      const [n] = yield* destQuery(
        "count migrated blobs",
        `SELECT count(*) AS n, coalesce(sum(c.blob_size), 0)::text AS bytes FROM blob_state c WHERE true${a.text}${s.text}${withChunks}`,
        [...a.params, ...s.params]
      )
      return { rows: Number(n?.n ?? 0), bytes: Number(n?.bytes ?? 0) }
    })

  /** Blobs of blob_chunk without a blob_state row, in key order: count and the first `limit`. */
  const unmigrated = (limit: number, sharded: boolean) =>
    Effect.gen(function*() {
      const s = sharded ? shardFilter(1) : { text: "", params: [] as ReadonlyArray<unknown> }
      const hasState = yield* stateExists(destQuery)
      if (sameDatabase) {
        const notDone = hasState ? "NOT EXISTS (SELECT 1 FROM blob_state s WHERE s.zoid = c.zoid AND s.tid = c.tid)" : "true"
        const [n] = yield* query(
          "count unmigrated blobs",
          `SELECT count(*) AS n FROM (SELECT DISTINCT c.zoid, c.tid FROM blob_chunk c WHERE ${notDone}${s.text}) b`,
          s.params
        )
        const rows = yield* query(
          "list unmigrated blobs",
          `SELECT c.zoid::text AS zoid, c.tid::text AS tid, min(c.chunk::bigint) AS oid FROM blob_chunk c
           WHERE ${notDone}${s.text} GROUP BY c.zoid, c.tid ORDER BY c.zoid, c.tid LIMIT $${s.params.length + 1}`,
          [...s.params, limit]
        )
        return { count: Number(n?.n ?? 0), examples: rows.map((r) => ({ key: keyOf(r), oid: Number(r.oid ?? 0) })) }
      }
      // another database: blob_chunk's keys page by page, each page looked up in blob_state
      let count = 0
      const examples: Array<{ key: string; oid: number }> = []
      let position: string | undefined
      while (true) {
        const a = afterKey(position, 1)
        const sf = sharded ? shardFilter(a.params.length + 1) : { text: "", params: [] as ReadonlyArray<unknown> }
        const rows = yield* query(
          "list blobs",
          `SELECT c.zoid::text AS zoid, c.tid::text AS tid, min(c.chunk::bigint) AS oid FROM blob_chunk c
           WHERE true${a.text}${sf.text} GROUP BY c.zoid, c.tid ORDER BY c.zoid, c.tid LIMIT $${a.params.length + sf.params.length + 1}`,
          [...a.params, ...sf.params, mergePage]
        )
        const done = hasState ? yield* recorded(rows.map(keyOf)) : new Set<string>()
        for (const r of rows) {
          if (done.has(keyOf(r))) continue
          count += 1
          if (examples.length < limit) examples.push({ key: keyOf(r), oid: Number(r.oid ?? 0) })
        }
        if (rows.length < mergePage) break
        position = keyOf(rows[rows.length - 1]!)
      }
      return { count, examples }
    })

  const unmigratedWithData = (limit: number): Effect.Effect<Examples<{ readonly key: string; readonly oid: number }>, SchemaMismatch | MissingGrant | DatabaseError> =>
    Effect.andThen(ctx.blobChunk, unmigrated(limit, true))

  const references = (oids: ReadonlyArray<number>) =>
    oids.length === 0 ? Effect.succeed([]) : run(
      "find chunks referencing large objects",
      sql<{ readonly oid: number; readonly zoid: string; readonly tid: string; readonly present: boolean }>`
        SELECT c.chunk AS oid, c.zoid::text AS zoid, c.tid::text AS tid,
          EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = c.chunk) AS present
        FROM blob_chunk c WHERE c.chunk = ANY(${oidArray([...new Set(oids)])})`
    ).pipe(Effect.map((rows) => rows.map((r) => ({ oid: Number(r.oid), key: `${r.zoid}/${r.tid}`, present: r.present }))))

  /** the rows whose blob_state row is still what was verified (same size; same s3_key, or same inline bytes) */
  const stillRecorded = (rows: ReadonlyArray<MigratedRow>) =>
    rows.length === 0 ? Effect.succeed(new Set<string>()) : Effect.map(
      destQuery(
        "recheck blob_state",
        `SELECT s.zoid::text AS zoid, s.tid::text AS tid FROM blob_state s
         JOIN unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) AS u(zoid, tid, size, s3_key, sha256)
           ON s.zoid = u.zoid AND s.tid = u.tid
         WHERE s.blob_size = u.size AND CASE WHEN u.s3_key <> '' THEN ${bucketKeySql("s.s3_key", "$6::text")} = u.s3_key
           ELSE s.s3_key IS NULL AND encode(sha256(s.data), 'hex') = u.sha256 END`,
        [
          ...keyArrays(rows.map((r) => r.key)),
          rows.map((r) => String(r.size ?? -1)),
          // the bucket keys verified; s3_key gets the prefix back to compare
          rows.map((r) => (r.inline === undefined ? r.objectKey ?? "" : "")),
          rows.map((r) => r.inline?.sha256 ?? ""),
          sqlPrefix(profile.s3Prefix)
        ]
      ),
      (found) => new Set(found.map(keyOf))
    )

  // prune: in one transaction of the source database, a verified blob's chunks are deleted only while
  // they still are the large objects that were verified (locked first), then each of those large
  // objects that no remaining chunk references is unlinked. RelStorage's own trigger
  // (blob_chunk_delete_trigger) may already unlink them on the DELETE: counted as unlinked all the same.
  const release = (rows: ReadonlyArray<MigratedRow>) =>
    Effect.gen(function*() {
      // never a DELETE on blob_chunk without the index (ChunkIndex.ts): checked once, before the first
      const index = yield* chunkIndexChecked
      if (!index.indexed) return yield* ChunkIndex.refusal(index)
      const intact = yield* stillRecorded(rows)
      const candidates = rows.filter((r) => intact.has(r.key) && oidsOf(r).length > 0)
      if (candidates.length === 0) {
        return { released: [], changed: [...rows], unlinked: [], kept: [], absent: [] } satisfies Released
      }
      const [zoids, tids] = keyArrays(candidates.map((r) => r.key))
      return yield* run(
        "release blob chunks",
        transaction(sql, Effect.gen(function*() {
          const current = yield* sql<{ readonly zoid: string; readonly tid: string; readonly oid: number | null; readonly present: boolean }>`
            SELECT c.zoid::text AS zoid, c.tid::text AS tid, c.chunk AS oid,
              EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = c.chunk) AS present
            FROM blob_chunk c JOIN unnest(${zoids}::bigint[], ${tids}::bigint[]) AS u(zoid, tid) ON c.zoid = u.zoid AND c.tid = u.tid
            ORDER BY c.zoid, c.tid, c.chunk_num
            FOR UPDATE OF c`
          const now = new Map<string, Array<number | null>>()
          const presentBefore = new Map<number, boolean>()
          for (const c of current) {
            const key = `${c.zoid}/${c.tid}`
            now.set(key, [...(now.get(key) ?? []), c.oid === null ? null : Number(c.oid)])
            if (c.oid !== null) presentBefore.set(Number(c.oid), c.present)
          }
          const same = (r: MigratedRow) => {
            const verified = oidsOf(r)
            const there = now.get(r.key) ?? []
            return there.length === verified.length && there.every((oid, i) => oid === verified[i])
          }
          const released = candidates.filter(same)
          if (released.length > 0) {
            const [rz, rt] = keyArrays(released.map((r) => r.key))
            yield* sql`DELETE FROM blob_chunk c USING unnest(${rz}::bigint[], ${rt}::bigint[]) AS u(zoid, tid)
              WHERE c.zoid = u.zoid AND c.tid = u.tid`
          }
          const oids = [...new Set(released.flatMap(oidsOf))]
          // after the delete, a chunk still referencing an oid belongs to a blob not released now; one
          // lookup for the batch, through the index on blob_chunk(chunk) that release insists on
          const state = oids.length === 0 ? [] : yield* sql<{ readonly oid: number; readonly present: boolean; readonly referenced_by: string | null }>`
            SELECT o.oid,
              EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = o.oid) AS present, r.referenced_by
            FROM unnest(${oidArray(oids)}) AS o(oid)
            LEFT JOIN (SELECT c.chunk, string_agg(c.zoid || '/' || c.tid, ',' ORDER BY c.zoid, c.tid) AS referenced_by
                       FROM blob_chunk c WHERE c.chunk = ANY(${oidArray(oids)}) GROUP BY c.chunk) r ON r.chunk = o.oid`
          const toUnlink = state.filter((s) => s.present && s.referenced_by === null).map((s) => Number(s.oid))
          if (toUnlink.length > 0) yield* sql`SELECT lo_unlink(o.oid) FROM unnest(${oidArray(toUnlink)}) AS o(oid)`
          const byTrigger = state.filter((s) => !s.present && presentBefore.get(Number(s.oid)) === true).map((s) => Number(s.oid))
          const bytes = (oid: number) => bytesOfOid(released.find((r) => oidsOf(r).includes(oid))!, oid)
          return {
            released,
            changed: rows.filter((r) => !released.includes(r)),
            unlinked: [...toUnlink, ...byTrigger].map((oid) => ({ oid, bytes: bytes(oid) })),
            kept: state.filter((s) => s.present && s.referenced_by !== null).map((s) => ({
              oid: Number(s.oid),
              referencedBy: s.referenced_by!.split(",")
            })),
            absent: state.filter((s) => !s.present && presentBefore.get(Number(s.oid)) !== true).map((s) => Number(s.oid))
          } satisfies Released
        }))
      )
    })

  // prune's pre-flight: the index on blob_chunk(chunk) (ChunkIndex.ts); a dry run only reports
  const preparePrune = (options: { readonly apply: boolean; readonly createIndex: boolean }) =>
    Effect.gen(function*() {
      yield* ctx.blobChunk
      if (options.apply) {
        yield* Grants.require(sql, run, [{ table: "blob_chunk", privileges: ["SELECT", "DELETE"] }], "prune deletes the blob_chunk rows of the blobs it releases")
      }
      const state = yield* ChunkIndex.inspect(query)
      if (state.indexed) return [`blob_chunk: index ${state.name} on (chunk) found`]
      if (!options.apply) {
        const refusal = ChunkIndex.refusal(state)
        return options.createIndex
          ? [`blob_chunk has no index on (chunk): prune --yes --create-chunk-index would run ${ChunkIndex.createStatement} first`]
          : [`prune --yes will refuse: blob_chunk ${refusal.problem}. To go on: ${refusal.fix}`]
      }
      if (!options.createIndex) return yield* ChunkIndex.refusal(state)
      const seconds = yield* ChunkIndex.create(sql, state)
      return [`blob_chunk had no index on (chunk): created the index: ${ChunkIndex.createStatement} (${seconds.toFixed(1)} s)`]
    })
  // a found index is remembered for the run (one lookup, not one per batch); a missing one is looked for again
  let indexFound: ChunkIndex.State | undefined
  const chunkIndexChecked = Effect.suspend(() =>
    indexFound !== undefined ? Effect.succeed(indexFound) : Effect.tap(ChunkIndex.inspect(query), (state) =>
      Effect.sync(() => {
        if (state.indexed) indexFound = state
      }))
  )

  // --finalize (after the verification of every migrated blob): every blob of blob_chunk has its
  // blob_state row and no row lacks both data and s3_key (zodb-pgjsonb could not read it). A row with both
  // is zodb-pgjsonb's own (its inline upsert keeps an old s3_key; it reads s3_key first) and is left alone.
  // s3_key values an older lo-migrate wrote with the prefix are rewritten to zodb-pgjsonb's key (the
  // object stays where it is: prefix + "/" + key), and that version's CHECK constraint is dropped.
  // No constraint is added: zodb-pgjsonb writes this table too.
  const finalize: Effect.Effect<void, DatabaseError | SchemaMismatch | MissingGrant | TableBusy> = Effect.gen(function*() {
    yield* ctx.blobChunk
    if (!(yield* stateExists(destQuery))) {
      return yield* new SchemaMismatch({
        table: "blob_state",
        problem: "does not exist",
        fix: "run lo-migrate migrate --profile relstorage first (with the --dest-pg-url it used, if any)"
      })
    }
    const open = yield* unmigrated(exampleCount, false)
    if (open.count > 0) {
      return yield* new SchemaMismatch({
        table: "blob_state",
        problem: `${open.count} blob(s) of blob_chunk have no blob_state row (e.g. ${open.examples.map((e) => `${e.key} (oid ${e.oid})`).join("; ")}` +
          `${open.count > open.examples.length ? "; ..." : ""}): cannot finalize`,
        fix: "run lo-migrate migrate (without --finalize) until it exits 0, then --finalize again; a blob whose chunk is " +
          "dangling is never migrated: repair or delete it"
      })
    }
    const [broken] = yield* destQuery("count blob_state rows without data or s3_key", "SELECT count(*) AS n FROM blob_state WHERE data IS NULL AND s3_key IS NULL", [])
    if (Number(broken?.n ?? 0) > 0) {
      const examples = yield* destQuery(
        "list blob_state rows without data or s3_key",
        `SELECT zoid::text AS zoid, tid::text AS tid FROM blob_state WHERE data IS NULL AND s3_key IS NULL
         ORDER BY zoid, tid LIMIT ${exampleCount}`,
        []
      )
      return yield* new SchemaMismatch({
        table: "blob_state",
        problem: `${broken?.n} row(s) have neither data nor s3_key (e.g. ${examples.map(keyOf).join(", ")}): zodb-pgjsonb cannot ` +
          "read those blobs",
        fix: "DELETE FROM blob_state WHERE data IS NULL AND s3_key IS NULL; then run lo-migrate migrate again, then --finalize"
      })
    }
    // an older lo-migrate's keys: only those written with this --s3-prefix can be rewritten
    const prefix = sqlPrefix(profile.s3Prefix)
    const rewritable = `${legacyKeys} AND $1::text <> '' AND starts_with(s3_key, $1::text) AND substr(s3_key, length($1::text) + 1) ~ '${recordedPattern}'`
    const [other] = yield* destQuery(
      "count s3_key values with another prefix",
      `SELECT count(*) AS n FROM blob_state WHERE ${legacyKeys} AND NOT (${rewritable})`,
      [prefix]
    )
    if (Number(other?.n ?? 0) > 0) {
      const examples = yield* destQuery(
        "list s3_key values with another prefix",
        `SELECT zoid::text AS zoid, tid::text AS tid, s3_key FROM blob_state WHERE ${legacyKeys} AND NOT (${rewritable})
         ORDER BY zoid, tid LIMIT ${exampleCount}`,
        [prefix]
      )
      return yield* new SchemaMismatch({
        table: "blob_state",
        problem: `${other?.n} row(s) hold an s3_key that is not zodb-pgjsonb's (blobs/{zoid:016x}/{tid:016x}.blob) ` +
          `${profile.s3Prefix === undefined ? "" : `nor that key under --s3-prefix ${profile.s3Prefix} `}(e.g. ` +
          `${examples.map((r) => `${keyOf(r)}: ${String(r.s3_key)}`).join(", ")}): zodb-pgjsonb would not find those objects`,
        fix: "rerun --finalize with the --s3-prefix they were written with (lo-migrate before it stored zodb-pgjsonb's key kept the prefix in s3_key)"
      })
    }
    const [has] = yield* destQuery(
      "look for the old CHECK constraint",
      "SELECT count(*) AS n FROM pg_catalog.pg_constraint WHERE conrelid = to_regclass('blob_state') AND conname = $1",
      [oldConstraint]
    )
    if (Number(has?.n ?? 0) > 0) {
      const dest = yield* ctx.destSql
      yield* alter(dest, {
        relation: "blob_state",
        shown: "blob_state",
        what: `drop constraint ${oldConstraint}`,
        statements: [`ALTER TABLE blob_state DROP CONSTRAINT IF EXISTS ${oldConstraint}`]
      }).pipe(Effect.catchTag("SqlError", (cause) => Effect.fail(new DatabaseError({ operation: `drop constraint ${oldConstraint}`, cause }))))
      yield* Effect.logInfo(
        `blob_state: dropped CHECK constraint ${oldConstraint} (added by an earlier lo-migrate --finalize): zodb-pgjsonb's inline ` +
          "upsert keeps an old s3_key next to data, which it forbids"
      )
    }
    const [rewritten] = yield* destQuery(
      "rewrite s3_key values without the prefix",
      `WITH u AS (UPDATE blob_state SET s3_key = substr(s3_key, length($1::text) + 1) WHERE ${rewritable} RETURNING 1)
       SELECT count(*) AS n FROM u`,
      [prefix]
    )
    if (Number(rewritten?.n ?? 0) > 0) {
      yield* Effect.logInfo(
        `blob_state: ${rewritten?.n} s3_key value(s) rewritten without the prefix ${profile.s3Prefix} (zodb-pgjsonb's key; ` +
          `its s3-prefix must be ${profile.s3Prefix}); the objects stay where they are`
      )
    }
  })

  // plan. One scan groups the chunks into blobs; a blob's size is blob_state.blob_size once migrated,
  // else the sum of its large objects' lengths (LargeObjects.lengthJoin: each descriptor closed at once,
  // so linear in the chunks). Migrated blobs whose chunks were pruned count as migrated.
  const inventory = (sizeBounds: ReadonlyArray<number>) =>
    Effect.gen(function*() {
      yield* ctx.blobChunk
      const hasState = yield* stateExists(destQuery)
      const tally = sameDatabase ? yield* tallySame(sizeBounds, hasState) : yield* tallyAcross(sizeBounds, hasState)
      const [shared] = yield* query(
        "count shared oids",
        `SELECT count(*) AS oids, coalesce(sum(s.n), 0)::text AS rows
         FROM (SELECT count(*) AS n FROM blob_chunk c WHERE c.chunk IS NOT NULL GROUP BY c.chunk HAVING count(*) > 1) s`,
        []
      )
      const sharedExamples = yield* query(
        "list shared oids",
        `SELECT c.chunk::bigint AS oid, string_agg(c.zoid || '/' || c.tid, ',' ORDER BY c.zoid, c.tid) AS keys
         FROM blob_chunk c WHERE c.chunk IS NOT NULL
         GROUP BY c.chunk HAVING count(*) > 1 ORDER BY c.chunk LIMIT ${exampleCount}`,
        []
      )
      const notes: Array<string> = []
      if (!sameDatabase) notes.push("blob_state is in another database (--dest-pg-url): its blobs matched with blob_chunk's by key")
      if (!hasState) notes.push("table blob_state does not exist yet: every blob counts as not migrated; migrate creates it")
      notes.push(
        `at --blob-threshold ${profile.blobThreshold}: ${tally.toS3.n} blob(s), ${tally.toS3.bytes} bytes to S3; ` +
          `${tally.inline.n} blob(s), ${tally.inline.bytes} bytes inline into blob_state.data (no S3 request)`
      )
      notes.push("sizes of blobs to migrate read from their large objects (lo_lseek64); migrated ones from blob_state.blob_size")
      if (tally.pruned > 0) notes.push(`${tally.pruned} migrated blob(s) have no chunks left in blob_chunk (pruned)`)
      if (hasState) {
        const legacy = yield* legacyRows
        if (legacy.count > 0) notes.push(legacyNote(legacy))
      }
      const result: Inventory = {
        total: tally.todo.n + tally.done.n,
        migrated: tally.done.n,
        remaining: tally.todo.n,
        totalBytes: tally.todo.bytes + tally.done.bytes,
        migratedBytes: tally.done.bytes,
        remainingBytes: tally.todo.bytes,
        histogram: tally.histogram,
        unknownSize: tally.unknownSize,
        nullData: tally.nullChunks,
        dangling: tally.dangling,
        malformedKeys: { count: 0, examples: [] },
        sharedOids: {
          oids: Number(shared?.oids ?? 0),
          rows: Number(shared?.rows ?? 0),
          examples: sharedExamples.map((r) => ({ oid: Number(r.oid), keys: String(r.keys).split(",") }))
        },
        notes
      }
      return result
    })

  interface Sum {
    n: number
    bytes: bigint
  }
  interface Tally {
    readonly todo: Sum
    readonly done: Sum
    readonly toS3: Sum
    readonly inline: Sum
    readonly histogram: ReadonlyArray<{ readonly upTo: number | undefined; readonly objects: number; readonly bytes: bigint }>
    readonly unknownSize: number
    readonly pruned: number
    readonly nullChunks: Examples<string>
    readonly dangling: Examples<{ readonly key: string; readonly oid: number }>
  }

  const tallySame = (sizeBounds: ReadonlyArray<number>, hasState: boolean) =>
    Effect.gen(function*() {
      const migratedSize = hasState
        ? "(SELECT s.blob_size FROM blob_state s WHERE s.zoid = c.zoid AND s.tid = c.tid)"
        : "NULL::bigint"
      const groups = yield* query(
        "count blobs and bytes",
        `WITH b AS MATERIALIZED (
           SELECT c.zoid, c.tid, bool_and(c.chunk IS NOT NULL AND ${present("c.chunk")}) AS whole,
             ${migratedSize} AS done_size
           FROM blob_chunk c GROUP BY c.zoid, c.tid),
         r AS MATERIALIZED (
           SELECT b.done_size IS NULL AS todo,
             coalesce(b.done_size, CASE WHEN b.whole THEN
               (SELECT sum(len.size)::bigint FROM blob_chunk c ${LargeObjects.lengthJoin("c.chunk", "len")}
                WHERE c.zoid = b.zoid AND c.tid = b.tid) END) AS size
           FROM b)
         SELECT r.todo, width_bucket(r.size, $1::int8[]) AS bucket, r.size >= $2::bigint AS s3,
           count(*) AS n, coalesce(sum(r.size), 0)::text AS bytes
         FROM r GROUP BY 1, 2, 3`,
        [sizeBounds.map((b) => b + 1), profile.blobThreshold]
      )
      const sum = (rows: ReadonlyArray<Raw>): Sum =>
        rows.reduce<Sum>((acc, r) => ({ n: acc.n + Number(r.n), bytes: acc.bytes + BigInt(String(r.bytes)) }), { n: 0, bytes: 0n })
      const todo = groups.filter((r) => r.todo === true)
      const done = sum(groups.filter((r) => r.todo !== true))
      // migrated blobs whose chunks are gone (pruned) are migrated all the same
      const [pruned] = hasState
        ? yield* query(
          "count pruned blobs",
          `SELECT count(*) AS n, coalesce(sum(s.blob_size), 0)::text AS bytes FROM blob_state s
           WHERE NOT EXISTS (SELECT 1 FROM blob_chunk c WHERE c.zoid = s.zoid AND c.tid = s.tid)`,
          []
        )
        : [undefined]
      const prunedSum = { n: Number(pruned?.n ?? 0), bytes: BigInt(String(pruned?.bytes ?? 0)) }
      const notDone = hasState ? "NOT EXISTS (SELECT 1 FROM blob_state s WHERE s.zoid = c.zoid AND s.tid = c.tid)" : "true"
      const problem = (operation: string, where: string) =>
        Effect.gen(function*() {
          const [n] = yield* query(
            `count ${operation}`,
            `SELECT count(DISTINCT (c.zoid, c.tid)) AS n FROM blob_chunk c WHERE ${notDone} AND ${where}`,
            []
          )
          const rows = yield* query(
            `list ${operation}`,
            `SELECT c.zoid::text AS zoid, c.tid::text AS tid, min(c.chunk::bigint) AS oid FROM blob_chunk c
             WHERE ${notDone} AND ${where} GROUP BY c.zoid, c.tid ORDER BY c.zoid, c.tid LIMIT ${exampleCount}`,
            []
          )
          return { count: Number(n?.n ?? 0), rows }
        })
      const nullChunks = yield* problem("NULL chunks", "c.chunk IS NULL")
      const dangling = yield* problem("dangling chunks", `c.chunk IS NOT NULL AND NOT ${present("c.chunk")}`)
      const tally: Tally = {
        todo: sum(todo),
        done: { n: done.n + prunedSum.n, bytes: done.bytes + prunedSum.bytes },
        toS3: sum(todo.filter((r) => r.s3 === true)),
        inline: sum(todo.filter((r) => r.s3 === false)),
        histogram: [...sizeBounds, undefined].map((upTo, i) => {
          const b = sum(todo.filter((r) => r.bucket !== null && Number(r.bucket) === i))
          return { upTo, objects: b.n, bytes: b.bytes }
        }),
        unknownSize: sum(todo.filter((r) => r.bucket === null)).n,
        pruned: prunedSum.n,
        nullChunks: { count: nullChunks.count, examples: nullChunks.rows.map(keyOf) },
        dangling: { count: dangling.count, examples: dangling.rows.map((r) => ({ key: keyOf(r), oid: Number(r.oid) })) }
      }
      return tally
    })

  // --dest-pg-url: blob_chunk's blobs and blob_state's rows, each paged in key order, merged
  const tallyAcross = (sizeBounds: ReadonlyArray<number>, hasState: boolean) =>
    Effect.gen(function*() {
      const todo: Sum = { n: 0, bytes: 0n }
      const done: Sum = { n: 0, bytes: 0n }
      const toS3: Sum = { n: 0, bytes: 0n }
      const inline: Sum = { n: 0, bytes: 0n }
      const buckets = [...sizeBounds, undefined].map((upTo) => ({ upTo, objects: 0, bytes: 0n }))
      let unknownSize = 0
      let pruned = 0
      const nullChunks = { count: 0, examples: [] as Array<string> }
      const dangling = { count: 0, examples: [] as Array<{ key: string; oid: number }> }

      // blob_state's side: a cursor over its keys
      let stateRows: ReadonlyArray<Raw> = []
      let stateAt = 0
      let stateAfter: string | undefined
      let stateDone = !hasState
      const peekState = Effect.gen(function*() {
        if (stateAt < stateRows.length) return stateRows[stateAt]
        if (stateDone) return undefined
        const a = afterKey(stateAfter, 1)
        stateRows = yield* destQuery(
          "list blob_state",
          `SELECT c.zoid::text AS zoid, c.tid::text AS tid, c.blob_size::text AS size FROM blob_state c
           WHERE true${a.text} ORDER BY c.zoid, c.tid LIMIT $${a.params.length + 1}`,
          [...a.params, mergePage]
        )
        stateAt = 0
        if (stateRows.length < mergePage) stateDone = true
        if (stateRows.length > 0) stateAfter = keyOf(stateRows[stateRows.length - 1]!)
        return stateRows[0]
      })
      const countDone = (r: Raw) => {
        done.n += 1
        done.bytes += BigInt(String(r.size))
        stateAt += 1
      }

      // pages of `mergePage` blobs: the descriptors a page opens end with its statement
      const read = `CASE WHEN ${present("c.chunk")} THEN lo_lseek64(lo_open(c.chunk, ${invRead}), 0, 2) END`
      let position: string | undefined
      while (true) {
        const a = afterKey(position, 1)
        const blobs = yield* query(
          "list blobs and sizes",
          `SELECT c.zoid::text AS zoid, c.tid::text AS tid,
             bool_and(c.chunk IS NOT NULL AND ${present("c.chunk")}) AS whole,
             bool_or(c.chunk IS NULL) AS has_null,
             min(CASE WHEN c.chunk IS NOT NULL AND NOT ${present("c.chunk")} THEN c.chunk::bigint END) AS dangling_oid,
             sum(${read})::text AS size
           FROM blob_chunk c WHERE true${a.text}
           GROUP BY c.zoid, c.tid ORDER BY c.zoid, c.tid LIMIT $${a.params.length + 1}`,
          [...a.params, mergePage]
        )
        for (const b of blobs) {
          const key = keyOf(b)
          const k = parse(key)
          let s = yield* peekState
          while (s !== undefined && compare(parse(keyOf(s)), k) < 0) {
            pruned += 1
            countDone(s)
            s = yield* peekState
          }
          if (s !== undefined && compare(parse(keyOf(s)), k) === 0) {
            countDone(s)
            continue
          }
          todo.n += 1
          if (b.has_null === true) {
            nullChunks.count += 1
            if (nullChunks.examples.length < exampleCount) nullChunks.examples.push(key)
          }
          if (b.dangling_oid !== null && b.dangling_oid !== undefined) {
            dangling.count += 1
            if (dangling.examples.length < exampleCount) dangling.examples.push({ key, oid: Number(b.dangling_oid) })
          }
          const size = b.whole === true && b.size !== null && b.size !== undefined ? BigInt(String(b.size)) : undefined
          if (size === undefined) {
            unknownSize += 1
            continue
          }
          todo.bytes += size
          const bucket = buckets[sizeBounds.filter((bound) => BigInt(bound) < size).length]!
          bucket.objects += 1
          bucket.bytes += size
          const side = size >= BigInt(profile.blobThreshold) ? toS3 : inline
          side.n += 1
          side.bytes += size
        }
        if (blobs.length < mergePage) break
        position = keyOf(blobs[blobs.length - 1]!)
      }
      let rest = yield* peekState
      while (rest !== undefined) {
        pruned += 1
        countDone(rest)
        rest = yield* peekState
      }
      const tally: Tally = { todo, done, toS3, inline, histogram: buckets, unknownSize, pruned, nullChunks, dangling }
      return tally
    })

  // blobs to migrate in random order; plan reads their first chunk. With blob_state elsewhere, more are
  // picked and the migrated ones dropped.
  const sample = (limit: number) =>
    Effect.gen(function*() {
      yield* ctx.blobChunk
      const hasState = yield* stateExists(destQuery)
      const notDone = hasState && sameDatabase
        ? "NOT EXISTS (SELECT 1 FROM blob_state s WHERE s.zoid = b.zoid AND s.tid = b.tid)"
        : "true"
      const pick = hasState && !sameDatabase ? limit * 4 + 10 : limit
      // the length is read only for the blobs picked: the random sort happens in the subquery
      const rows = yield* query(
        "sample blobs",
        `SELECT p.zoid::text AS zoid, p.tid::text AS tid, p.oid::bigint AS oid,
           CASE WHEN ${present("p.oid")} THEN lo_lseek64(lo_open(p.oid, ${invRead}), 0, 2) END AS size
         FROM (SELECT b.zoid, b.tid,
                 (SELECT c.chunk FROM blob_chunk c WHERE c.zoid = b.zoid AND c.tid = b.tid ORDER BY c.chunk_num LIMIT 1) AS oid
               FROM (SELECT DISTINCT zoid, tid FROM blob_chunk) b
               WHERE ${notDone} ORDER BY random() LIMIT $1) p
         WHERE p.oid IS NOT NULL`,
        [pick]
      )
      const done = hasState && !sameDatabase ? yield* recorded(rows.map(keyOf)) : new Set<string>()
      return rows.filter((r) => !done.has(keyOf(r))).slice(0, limit).map((r): Candidate => ({
        key: keyOf(r),
        oid: Number(r.oid),
        size: Number(r.size ?? 0),
        contentType: "application/octet-stream",
        expectedSha1: undefined
      }))
    })

  return {
    plan: { inventory, sample },
    afterCopy: {
      migratedPage,
      migratedTotals,
      unmigratedWithData,
      references,
      release,
      preparePrune,
      unmigratedReason: "no blob_state row",
      releaseMeaning: "chunks deleted"
    },
    finalize
  }
}
