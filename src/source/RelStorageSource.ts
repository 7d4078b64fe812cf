/**
 * The `relstorage` profile: ZODB blobs in RelStorage's `blob_chunk`, moved into a zodb-pgjsonb style
 * `blob_state(zoid, tid, blob_size, data, s3_key)` table in the same database.
 *
 * `blob_chunk` comes in two layouts, both read by the same queries (detected for the log):
 * - history-preserving: `blob_chunk(zoid, tid, chunk_num, chunk)`, primary key (zoid, tid, chunk_num);
 * - history-free: `blob_chunk(zoid, chunk_num, tid, chunk)`, primary key (zoid, chunk_num).
 * One blob is the (zoid, tid) pair; old blobs of several chunks are the concatenation of their large
 * objects in chunk_num order (`Candidate.oids`).
 *
 * "Migrated" means a `blob_state` row exists for (zoid, tid). Blobs of at least `blobThreshold` bytes
 * go to S3 under `[prefix/]blobs/{zoid:016x}/{tid:016x}.blob` and get `s3_key` (data NULL); smaller ones
 * are stored inline in `data` (s3_key NULL) without an S3 request, committed by the same committers.
 */
import { Effect, Layer, Result } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { DatabaseUnavailable, describeCause, ProfileUnsupported, SchemaMismatch } from "../domain/Errors.ts"
import type { Candidate, Stored } from "../domain/LargeObject.ts"
import type { RelStorageProfile, Shard } from "../domain/Profile.ts"
import type { RetryPolicy } from "../pipeline/Retry.ts"
import { Stats } from "../pipeline/Stats.ts"
import { type ListedRow, Source, statement } from "./Source.ts"

const invRead = 0x40000
const hex16 = (n: bigint) => n.toString(16).padStart(16, "0")

/** `zoid/tid` in decimal: the key a blob travels under. */
export const blobKey = (zoid: bigint | string, tid: bigint | string) => `${zoid}/${tid}`
const splitKey = (key: string): readonly [string, string] => {
  const [zoid, tid] = key.split("/")
  return [zoid!, tid!]
}

/** The S3 key of a blob, as zodb-pgjsonb lays them out. */
export const s3KeyOf = (prefix: string | undefined, zoid: bigint, tid: bigint): string =>
  `${prefix === undefined || prefix === "" ? "" : `${prefix.replace(/\/+$/, "")}/`}blobs/${hex16(zoid)}/${hex16(tid)}.blob`

type Raw = Record<string, unknown>

export const layer = (
  profile: RelStorageProfile,
  shard: Shard | undefined,
  policy: RetryPolicy
): Layer.Layer<Source, never, SqlClient.SqlClient | Stats> =>
  Layer.effect(
    Source,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const stats = yield* Stats
      const run = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) =>
        statement(operation, policy, effect).pipe(Effect.provideService(Stats, stats))
      const query = (operation: string, text: string, params: ReadonlyArray<unknown>) =>
        run(operation, sql.unsafe<Raw>(text, params))

      const shardFilter = (next: number) =>
        shard === undefined ? { text: "", params: [] as ReadonlyArray<unknown> } : {
          text: ` AND abs(hashtext(ROW(c.zoid, c.tid)::text)::bigint) % $${next} = $${next + 1}`,
          params: [shard.count, shard.index]
        }
      const notMigrated = "NOT EXISTS (SELECT 1 FROM blob_state s WHERE s.zoid = c.zoid AND s.tid = c.tid)"

      const prepare = Effect.gen(function*() {
        const [found] = yield* query(
          "look for blob_chunk",
          `SELECT to_regclass('blob_chunk') IS NOT NULL AS present,
             (SELECT array_agg(a.attname::text ORDER BY a.attname)
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = to_regclass('blob_chunk') AND i.indisprimary) AS pk`,
          []
        )
        if (found?.present !== true) {
          return yield* new SchemaMismatch({ table: "blob_chunk", problem: "does not exist (or is not visible to this role)" })
        }
        const pk = (found.pk ?? []) as ReadonlyArray<string>
        yield* Effect.logInfo(
          `blob_chunk: ${pk.includes("tid") ? "history-preserving" : "history-free"} layout (primary key ${pk.join(", ") || "none"})`
        )
        yield* sql.unsafe(`CREATE TABLE IF NOT EXISTS blob_state (
            zoid bigint NOT NULL,
            tid bigint NOT NULL,
            blob_size bigint NOT NULL,
            data bytea,
            s3_key text,
            PRIMARY KEY (zoid, tid))`).pipe(
          Effect.mapError((error) =>
            new DatabaseUnavailable({
              problem: `cannot create blob_state: ${describeCause(error)}`,
              hint: "create it as in the README (\"--profile relstorage\") and grant SELECT, INSERT on it"
            })
          )
        )
      })

      const count = Effect.gen(function*() {
        const s = shardFilter(1)
        const [r] = yield* query(
          "count blobs",
          `SELECT count(*) FILTER (WHERE ${notMigrated}) AS remaining, count(*) AS total
           FROM (SELECT DISTINCT zoid, tid FROM blob_chunk) c WHERE true${s.text}`,
          s.params
        )
        return { remaining: Number(r?.remaining ?? 0), total: Number(r?.total ?? 0) }
      })

      const page = (after: string | undefined, limit: number) =>
        Effect.gen(function*() {
          const a = after === undefined
            ? { text: "", params: [] as ReadonlyArray<unknown> }
            : { text: " AND (c.zoid, c.tid) > ($1::bigint, $2::bigint)", params: splitKey(after) }
          const s = shardFilter(a.params.length + 1)
          const rows = yield* query(
            "list blobs",
            `SELECT c.zoid::text AS zoid, c.tid::text AS tid,
               array_agg(c.chunk::bigint ORDER BY c.chunk_num) AS oids,
               sum(CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = c.chunk)
                   THEN lo_lseek64(lo_open(c.chunk, ${invRead}), 0, 2) END)::bigint AS size
             FROM blob_chunk c
             WHERE ${notMigrated}${a.text}${s.text}
             GROUP BY c.zoid, c.tid
             ORDER BY c.zoid, c.tid LIMIT $${a.params.length + s.params.length + 1}`,
            [...a.params, ...s.params, limit]
          )
          return rows.map((r): ListedRow => {
            const key = blobKey(String(r.zoid), String(r.tid))
            const oids = (r.oids as ReadonlyArray<string | number>).map(Number)
            return {
              key,
              row: Result.succeed<Candidate>({
                key,
                oid: oids[0] ?? null,
                oids,
                size: Number(r.size ?? 0),
                contentType: "application/octet-stream",
                expectedSha1: undefined
              })
            }
          })
        })

      // inline blobs carry their bytes; both kinds are inserted by one statement per chunk, only while
      // the blob's chunks still exist (a blob deleted by a pack during the run is reported, not recorded)
      const commit = (chunk: ReadonlyArray<Stored>) =>
        Effect.gen(function*() {
          const keys = chunk.map((s) => splitKey(s.candidate.key))
          const rows = yield* query(
            "record blob_state",
            `INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key)
             SELECT u.zoid, u.tid, u.size, CASE WHEN u.inline THEN u.data END, CASE WHEN NOT u.inline THEN u.s3_key END
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[], $6::bool[])
               AS u(zoid, tid, size, data, s3_key, inline)
             WHERE EXISTS (SELECT 1 FROM blob_chunk c WHERE c.zoid = u.zoid AND c.tid = u.tid)
             ON CONFLICT (zoid, tid) DO NOTHING
             RETURNING zoid::text AS zoid, tid::text AS tid`,
            [
              keys.map((k) => k[0]),
              keys.map((k) => k[1]),
              chunk.map((s) => s.candidate.size),
              // placeholders instead of NULLs: the driver cannot type an array of NULLs only
              chunk.map((s) => s.inline ?? new Uint8Array(0)),
              chunk.map((s) => (s.inline === undefined ? s.key : "")),
              chunk.map((s) => s.inline !== undefined)
            ]
          )
          const inserted = new Set(rows.map((r) => blobKey(String(r.zoid), String(r.tid))))
          // a row that already existed (another run got there first) is migrated too, not vanished
          const missing = chunk.filter((s) => !inserted.has(s.candidate.key))
          if (missing.length === 0) return { vanished: [] }
          const present = yield* query(
            "check blob_state",
            `SELECT s.zoid::text AS zoid, s.tid::text AS tid FROM blob_state s
             JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON s.zoid = u.zoid AND s.tid = u.tid`,
            [missing.map((s) => splitKey(s.candidate.key)[0]), missing.map((s) => splitKey(s.candidate.key)[1])]
          )
          const there = new Set(present.map((r) => blobKey(String(r.zoid), String(r.tid))))
          return { vanished: missing.filter((s) => !there.has(s.candidate.key)) }
        })

      const unsupported = (what: string) => Effect.die(new ProfileUnsupported({ profile: "relstorage", what }))

      return Source.of({
        table: "blob_chunk",
        lockName: "blob_chunk",
        shard,
        objectKey: (candidate) => {
          const [zoid, tid] = splitKey(candidate.key)
          return s3KeyOf(profile.s3Prefix, BigInt(zoid), BigInt(tid))
        },
        inline: (_, size) => size < profile.blobThreshold,
        prepare,
        count,
        page,
        commit,
        recorded: () => unsupported("upload-blobs"),
        finalize: unsupported("--finalize"),
        inventory: () => unsupported("plan"),
        sample: () => unsupported("plan"),
        migratedPage: () => unsupported("verify"),
        unmigratedWithData: () => unsupported("prune"),
        references: () => unsupported("prune"),
        release: () => unsupported("prune")
      })
    })
  )
