/**
 * The `relstorage` profile: ZODB blobs in RelStorage's `blob_chunk`, moved into a zodb-pgjsonb style
 * `blob_state(zoid, tid, blob_size, data, s3_key)` table: in zodb-pgjsonb's database (`--dest-pg-url`;
 * `--for zodb-pgjsonb` insists on it), or next to RelStorage in the same database, which zodb-pgjsonb
 * cannot use (its schema does not fit beside RelStorage's object_state): that mode only keeps the blobs
 * there for a later step, and says so. A whole ZODB → zodb-pgjsonb migration is zodb-convert's (src/zodb/).
 *
 * `blob_chunk` comes in two layouts, both read by the same queries (detected for the log):
 * - history-preserving: `blob_chunk(zoid, tid, chunk_num, chunk)`, primary key (zoid, tid, chunk_num);
 * - history-free: `blob_chunk(zoid, chunk_num, tid, chunk)`, primary key (zoid, chunk_num).
 * One blob is the (zoid, tid) pair; old blobs of several chunks are the concatenation of their large
 * objects in chunk_num order (`Candidate.oids`).
 *
 * "Migrated" means a `blob_state` row exists for (zoid, tid). Blobs of at least `blobThreshold` bytes
 * go to S3 under `[prefix/]blobs/{zoid:016x}/{tid:016x}.blob` and get `s3_key` = the key without the
 * prefix, as zodb-pgjsonb stores it (data NULL; BlobKey.ts); smaller ones are stored inline in `data`
 * (s3_key NULL) without an S3 request, committed by the same committers.
 */
import { Effect, Layer, Result } from "effect"
import { SqlClient } from "effect/sql"
import { Context } from "effect"
import { DatabaseError, DatabaseUnavailable, describeCause, SchemaMismatch } from "../../domain/Errors.ts"
import * as Aliases from "../../phases/Aliases.ts"
import * as LargeObjects from "../../postgres/LargeObjects.ts"
import * as PgSession from "../../postgres/PgSession.ts"
import type { Candidate, Stored } from "../../domain/LargeObject.ts"
import type { RelStorageProfile, Shard } from "../../domain/Profile.ts"
import * as Recorded from "../../domain/Recorded.ts"
import type { RetryPolicy } from "../../core/Retry.ts"
import type { Stats } from "../../core/Stats.ts"
import { recordedByKey } from "../../postgres/KeyLookup.ts"
import { lockNamespace } from "../../postgres/RunLock.ts"
import { transaction } from "../../postgres/Transaction.ts"
import type { ListedRow } from "../../phases/CopySource.ts"
import * as ProfileServices from "../../phases/ProfileServices.ts"
import * as Grants from "../../postgres/Grants.ts"
import { describeUrl, runner, unreachable } from "../../postgres/Statement.ts"
import * as RelStorageLifecycle from "./RelStorageLifecycle.ts"
import * as RunKey from "../../postgres/RunKey.ts"
import { afterKey, bucketKeyOf, keyArrays, keyOf, recordedKeyOf, s3KeyOf, splitKey } from "./BlobKey.ts"
import * as ChunkIndex from "./ChunkIndex.ts"

/** The bucket key of a blob (`[prefix/]blobs/{zoid:016x}/{tid:016x}.blob`). */
export { s3KeyOf }

type Raw = Record<string, unknown>

export interface DestinationOptions {
  /** `--pg-ca` also serves the blob_state database */
  readonly pgCa?: string | undefined
  /** pool size of the blob_state database's client */
  readonly connections?: number | undefined
  /** `--pg-timeout` also bounds the blob_state database's sessions */
  readonly pgTimeout?: number | undefined
}

export const layer = (
  profile: RelStorageProfile,
  shard: Shard | undefined,
  policy: RetryPolicy,
  options: DestinationOptions = {}
): Layer.Layer<ProfileServices.ProfileServices, never, SqlClient.SqlClient | Stats> =>
  ProfileServices.layer(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const scope = yield* Effect.scope
      const run = yield* runner(policy)
      const query = (operation: string, text: string, params: ReadonlyArray<unknown>) =>
        run(operation, sql.unsafe<Raw>(text, params))

      // --dest-pg-url: blob_state lives in another database, reached by its own pool, connected on first
      // use (prepare, or verify's first page) so that a failure there is named as that database's
      const destUrl = profile.destPgUrl
      const sameDatabase = destUrl === undefined
      const connectDestination = destUrl === undefined ? Effect.succeed(sql) : yield* Effect.cached(
        Layer.buildWithScope(
          PgSession.layer(destUrl, {
            maxConnections: options.connections ?? 4,
            pgCa: options.pgCa,
            timeoutSeconds: options.pgTimeout
          }),
          scope
        ).pipe(
          Effect.map((context) => Context.get(context, SqlClient.SqlClient)),
          Effect.tap((dest) => dest`SELECT 1`),
          Effect.mapError((error) => unreachable(`the blob_state database at ${describeUrl(destUrl)}`, "--dest-pg-url", error))
        )
      )
      const destQuery = (operation: string, text: string, params: ReadonlyArray<unknown>) =>
        Effect.flatMap(
          connectDestination.pipe(Effect.mapError((cause) => new DatabaseError({ operation, cause }))),
          (dest) => run(operation, dest.unsafe<Raw>(text, params))
        )
      /** which of `keys` have a blob_state row (in the destination) */
      const recordedKeys = (keys: ReadonlyArray<string>) =>
        keys.length === 0 ? Effect.succeed(new Set<string>()) : destQuery(
          "check blob_state",
          `SELECT s.zoid::text AS zoid, s.tid::text AS tid FROM blob_state s
           JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON s.zoid = u.zoid AND s.tid = u.tid`,
          keyArrays(keys)
        ).pipe(Effect.map((rows) => new Set(rows.map((r) => keyOf(r)))))

      const shardFilter = (next: number) =>
        shard === undefined ? { text: "", params: [] as ReadonlyArray<unknown> } : {
          text: ` AND abs(hashtext(ROW(c.zoid, c.tid)::text)::bigint) % $${next} = $${next + 1}`,
          params: [shard.count, shard.index]
        }
      // same database: the page query leaves migrated blobs out itself; otherwise they are filtered after
      const notMigrated = sameDatabase ? "NOT EXISTS (SELECT 1 FROM blob_state s WHERE s.zoid = c.zoid AND s.tid = c.tid)" : "true"

      const blobChunkReadable = Grants.once(Grants.require(sql, run, [{ table: "blob_chunk", privileges: ["SELECT"] }], "reading RelStorage's blobs"))
      /** blob_chunk's primary key columns; fails when the table is missing or not readable */
      const blobChunk = Effect.gen(function*() {
        const [found] = yield* query(
          "look for blob_chunk",
          `SELECT to_regclass('blob_chunk') IS NOT NULL AS present,
             (SELECT array_agg(a.attname::text ORDER BY a.attname)
              FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
              WHERE i.indrelid = to_regclass('blob_chunk') AND i.indisprimary) AS pk`,
          []
        )
        if (found?.present !== true) {
          return yield* new SchemaMismatch({
            table: "blob_chunk",
            problem: "does not exist (or is not visible to this role)",
            fix: "give --pg-url the RelStorage database (the role must see blob_chunk on its search_path)"
          })
        }
        yield* blobChunkReadable
        return (found.pk ?? []) as ReadonlyArray<string>
      })

      /** What the blob_state database holds: RelStorage's object_state, zodb-pgjsonb's schema, or neither. */
      const destinationKind = Effect.gen(function*() {
        const [r] = yield* destQuery(
          "look at the blob_state database",
          `SELECT to_regclass('transaction_log') IS NOT NULL AS pgjsonb,
             EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass('object_state') AND NOT a.attisdropped
               AND (a.attname IN ('prev_tid', 'md5') OR (a.attname = 'state' AND a.atttypid = 'bytea'::regtype))) AS relstorage`,
          []
        )
        return r?.relstorage === true ? "relstorage" as const : r?.pgjsonb === true ? "zodb-pgjsonb" as const : "empty" as const
      })
      const where = destUrl === undefined ? "the RelStorage database (no --dest-pg-url)" : `the --dest-pg-url database ${describeUrl(destUrl)}`
      const sameDatabaseNote =
        `blob_state goes into ${where}, next to RelStorage's object_state: zodb-pgjsonb cannot use this database (its schema ` +
        "cannot be installed beside RelStorage's tables). This only keeps the blobs (S3 objects, inline data) next to RelStorage " +
        "for a later step, e.g. copying blob_state's rows into the zodb-pgjsonb database (pg_dump --table blob_state --data-only). " +
        "For a whole migration to zodb-pgjsonb use zodb-convert; to fill a zodb-pgjsonb database's blob_state give --dest-pg-url " +
        "(--for zodb-pgjsonb refuses this mode)"

      const prepare = Effect.gen(function*() {
        const pk = yield* blobChunk
        yield* Effect.logInfo(
          `blob_chunk: ${pk.includes("tid") ? "history-preserving" : "history-free"} layout (primary key ${pk.join(", ") || "none"})`
        )
        const dest = yield* connectDestination
        const kind = yield* destinationKind
        if (kind === "relstorage" || (sameDatabase && kind === "empty")) {
          if (profile.consumer === "zodb-pgjsonb") {
            return yield* new SchemaMismatch({
              table: "object_state",
              problem: `${where} holds RelStorage's object_state, so zodb-pgjsonb cannot use it and --for zodb-pgjsonb refuses to ` +
                "create blob_state there",
              fix: "give --dest-pg-url the zodb-pgjsonb database, or use zodb-convert for the whole migration"
            })
          }
          yield* Effect.logWarning(sameDatabaseNote)
        } else if (kind === "empty" && profile.consumer === "zodb-pgjsonb") {
          yield* Effect.logInfo(
            `${where} has no zodb-pgjsonb schema yet: zodb-pgjsonb creates its other tables around blob_state when it opens it`
          )
        }
        // Shards start together: CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin (it
        // races on the catalog's unique index), so creators take turns under a transaction lock. A
        // blob_state that exists is used as is: CREATE TABLE IF NOT EXISTS needs CREATE on the schema even
        // then, and an administrator creates it for a role without (the README says so).
        yield* transaction(dest, Effect.gen(function*() {
          yield* dest.unsafe("SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))", [lockNamespace, "blob_state"])
          const [found] = yield* dest.unsafe<{ readonly present: boolean }>("SELECT to_regclass('blob_state') IS NOT NULL AS present")
          if (found?.present === true) return
          yield* dest.unsafe(`CREATE TABLE IF NOT EXISTS blob_state (
            zoid bigint NOT NULL,
            tid bigint NOT NULL,
            blob_size bigint NOT NULL,
            data bytea,
            s3_key text,
            PRIMARY KEY (zoid, tid))`)
        })).pipe(
          Effect.catch((error) =>
            Effect.flatMap(
              dest<{ readonly role: string }>`SELECT quote_ident(current_user) AS role`.pipe(
                Effect.map(([r]) => r?.role ?? "<this role>"),
                Effect.orElseSucceed(() => "<this role>")
              ),
              (role) =>
                Effect.fail(
                  new DatabaseUnavailable({
                    problem: `cannot create blob_state in ${where}: ${describeCause(error)}`,
                    fix: "create it as the database's owner: CREATE TABLE blob_state (zoid bigint NOT NULL, tid bigint NOT NULL, " +
                      "blob_size bigint NOT NULL, data bytea, s3_key text, PRIMARY KEY (zoid, tid)); " +
                      `GRANT SELECT, INSERT ON blob_state TO ${role};`
                  })
                )
            )
          )
        )
        yield* Grants.require(dest, run, [{ table: "blob_state", privileges: ["SELECT", "INSERT"] }], `the copy records each blob in blob_state (${where})`)
      })

      const count = Effect.gen(function*() {
        const s = shardFilter(1)
        const [r] = yield* query(
          "count blobs",
          `SELECT count(*) FILTER (WHERE ${notMigrated}) AS remaining, count(*) AS total
           FROM (SELECT DISTINCT zoid, tid FROM blob_chunk) c WHERE true${s.text}`,
          s.params
        )
        const total = Number(r?.total ?? 0)
        if (sameDatabase) return { remaining: Number(r?.remaining ?? 0), total }
        // another database: its blob_state rows are taken to be this source's (one source per blob_state)
        const [d] = yield* destQuery("count blob_state", `SELECT count(*) AS n FROM blob_state c WHERE true${s.text}`, s.params)
        return { remaining: Math.max(0, total - Number(d?.n ?? 0)), total }
      })

      // Blobs made of the same large objects (same oids, same order) are read once: the page hands out
      // the first as the candidate and the others as its aliases (pipeline/Aliases.ts), within the page
      // and, with an index on blob_chunk(chunk), beyond it.
      // Without the index each page would scan blob_chunk to find them (RelStorage created
      // blob_chunk_loid before 3.0a4, none since: ChunkIndex.ts), so sharing is then found within a page only.
      const chunkIndexed = yield* Effect.cached(Effect.gen(function*() {
        const { indexed } = yield* ChunkIndex.inspect(query)
        if (!indexed) {
          yield* Effect.logInfo(
            "blob_chunk has no index on (chunk): blobs sharing large objects are read once only when they are listed in the same page; " +
              `${ChunkIndex.createStatement} finds them across pages (prune needs it anyway)`
          )
        }
        return indexed
      }))

      const page: (after: string | undefined, limit: number) => Effect.Effect<ReadonlyArray<ListedRow>, DatabaseError> = Aliases.pager({
        list: (after, limit) => listFrom(after, limit),
        // another database: migrated blobs are filtered here, not by the query
        migrated: sameDatabase ? undefined : recordedKeys,
        sharing: (last, sources, limit) =>
          Effect.flatMap(chunkIndexed, (indexed) => (indexed ? sharingAfter(last, sources, limit) : Effect.succeed([])))
      })

      /** unmigrated blobs of this shard after `after` made of one of the oid lists `sources` */
      const sharingAfter = (after: string, sources: ReadonlyArray<ReadonlyArray<number>>, limit: number) =>
        Effect.gen(function*() {
          const first = sources.flatMap((oids) => (oids.length === 0 ? [] : [oids[0]!]))
          if (first.length === 0) return []
          const s = shardFilter(4)
          const found = yield* query(
            "list blobs sharing large objects",
            `SELECT c.zoid::text AS zoid, c.tid::text AS tid, array_agg(c.chunk::bigint ORDER BY c.chunk_num) AS oids
             FROM blob_chunk c
             WHERE (c.zoid, c.tid) > ($1::bigint, $2::bigint) AND ${notMigrated}${s.text}
               AND (c.zoid, c.tid) IN (SELECT x.zoid, x.tid FROM blob_chunk x WHERE x.chunk = ANY($3::oid[]))
             GROUP BY c.zoid, c.tid
             ORDER BY c.zoid, c.tid LIMIT $${4 + s.params.length}`,
            [...splitKey(after), LargeObjects.oidArray(first), ...s.params, limit]
          )
          return found.map((r) => ({
            key: keyOf(r),
            oids: (r.oids as ReadonlyArray<string | number>).map(Number)
          }))
        })

      function listFrom(after: string | undefined, limit: number) {
        return Effect.gen(function*() {
          const a = afterKey(after, 1)
          const s = shardFilter(a.params.length + 1)
          const rows = yield* query(
            "list blobs",
            `SELECT c.zoid::text AS zoid, c.tid::text AS tid,
               array_agg(c.chunk::bigint ORDER BY c.chunk_num) AS oids,
               sum(CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = c.chunk)
                   THEN lo_lseek64(lo_open(c.chunk, ${LargeObjects.invRead}), 0, 2) END)::bigint AS size
             FROM blob_chunk c
             WHERE ${notMigrated}${a.text}${s.text}
             GROUP BY c.zoid, c.tid
             ORDER BY c.zoid, c.tid LIMIT $${a.params.length + s.params.length + 1}`,
            [...a.params, ...s.params, limit]
          )
          return rows.map((r): ListedRow => {
            const key = keyOf(r)
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
      }

      /** which of `keys` still have chunks in blob_chunk */
      const withChunks = (keys: ReadonlyArray<string>) =>
        Effect.map(
          query(
            "check blob_chunk",
            `SELECT DISTINCT c.zoid::text AS zoid, c.tid::text AS tid FROM blob_chunk c
             JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON c.zoid = u.zoid AND c.tid = u.tid`,
            keyArrays(keys)
          ),
          (rows) => new Set(rows.map(keyOf))
        )

      /** the chunks (oids in chunk_num order) of each of `keys` that still has chunks in blob_chunk */
      const chunksOf = (keys: ReadonlyArray<string>) =>
        keys.length === 0 ? Effect.succeed(new Map<string, ReadonlyArray<number>>()) : Effect.map(
          query(
            "read blob_chunk",
            `SELECT c.zoid::text AS zoid, c.tid::text AS tid, array_agg(c.chunk::bigint ORDER BY c.chunk_num) AS oids
             FROM blob_chunk c JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON c.zoid = u.zoid AND c.tid = u.tid
             GROUP BY c.zoid, c.tid`,
            keyArrays(keys)
          ),
          (rows) => new Map(rows.map((r) => [keyOf(r), (r.oids as ReadonlyArray<string | number>).map(Number)]))
        )
      /** the oids read for a blob: all of them as listed; upload-blobs has its manifest line's first only */
      const readOids = (s: Stored): { readonly oids: ReadonlyArray<number>; readonly whole: boolean } =>
        s.candidate.oids !== undefined
          ? { oids: s.candidate.oids, whole: true }
          : { oids: s.candidate.oid === null ? [] : [s.candidate.oid], whole: false }
      const holdsRead = (now: ReadonlyArray<number>, s: Stored) => {
        const read = readOids(s)
        return read.whole ? now.length === read.oids.length && now.every((o, i) => o === read.oids[i]) : now[0] === read.oids[0]
      }

      // inline blobs carry their bytes; both kinds are inserted by one statement per chunk, only while
      // the blob's chunks are still the large objects that were read (a blob deleted by a pack during the
      // run is reported, not recorded; one whose chunks were replaced too, or it would be recorded with
      // the old bytes and prune would delete the new chunks)
      const commit = (chunk: ReadonlyArray<Stored>) =>
        Effect.gen(function*() {
          // another database cannot see blob_chunk: the blobs still as read are looked up first
          const before = sameDatabase ? undefined : yield* chunksOf(chunk.map((s) => s.candidate.key))
          const live = before === undefined ? chunk : chunk.filter((s) => {
            const now = before.get(s.candidate.key)
            return now !== undefined && holdsRead(now, s)
          })
          const keys = live.map((s) => splitKey(s.candidate.key))
          const rows = live.length === 0 ? [] : yield* destQuery(
            "record blob_state",
            `INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key)
             SELECT u.zoid, u.tid, u.size, CASE WHEN u.inline THEN u.data END, CASE WHEN NOT u.inline THEN u.s3_key END
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[], $6::bool[], $7::text[], $8::bool[])
               AS u(zoid, tid, size, data, s3_key, inline, oids, whole)
             WHERE ${sameDatabase
              ? `EXISTS (SELECT 1 FROM (SELECT array_agg(c.chunk::bigint ORDER BY c.chunk_num) AS oids FROM blob_chunk c
                   WHERE c.zoid = u.zoid AND c.tid = u.tid) now
                 WHERE CASE WHEN u.whole THEN now.oids = u.oids::bigint[] ELSE now.oids[1] = (u.oids::bigint[])[1] END)`
              : "true"}
             ON CONFLICT (zoid, tid) DO NOTHING
             RETURNING zoid::text AS zoid, tid::text AS tid`,
            [
              keys.map((k) => k[0]),
              keys.map((k) => k[1]),
              live.map((s) => s.candidate.size),
              // placeholders instead of NULLs: the driver cannot type an array of NULLs only
              live.map((s) => (s.inline ?? new Uint8Array(0))),
              // zodb-pgjsonb's s3_key: the bucket key without --s3-prefix (its S3 client adds its own)
              live.map((s) => (s.inline === undefined ? recordedKeyOf(profile.s3Prefix, s.key) : "")),
              live.map((s) => s.inline !== undefined),
              live.map((s) => `{${readOids(s).oids.join(",")}}`),
              live.map((s) => readOids(s).whole)
            ]
          )
          const inserted = new Set(rows.map((r) => keyOf(r)))
          // a row that already existed (another run got there first) is migrated too, not vanished
          const missing = chunk.filter((s) => !inserted.has(s.candidate.key))
          if (missing.length === 0) return { vanished: [] }
          const there = yield* recordedKeys(missing.map((s) => s.candidate.key))
          const open = missing.filter((s) => !there.has(s.candidate.key))
          // why not: gone, or made of other large objects now (only a report: read after the commit)
          const now = before ?? (yield* chunksOf(open.map((s) => s.candidate.key)))
          const changed = open.flatMap((s) => {
            const oids = now.get(s.candidate.key)
            if (oids === undefined) return []
            const what = s.inline === undefined ? `its object ${s.key} is in S3` : "it was to be stored inline"
            return [{
              stored: s,
              detail: `chunks are now oids ${oids.join(", ")}, not ${readOids(s).oids.join(", ")} as read: no blob_state row ` +
                `recorded (${what}; the next run reads the blob again)`
            }]
          })
          return { vanished: open.filter((s) => !now.has(s.candidate.key)), changed }
        })

      // plan, verify, prune, finalize: RelStorageLifecycle.ts
      const destSql = connectDestination.pipe(
        Effect.mapError((cause) => new DatabaseError({ operation: "connect to the blob_state database", cause }))
      )
      const lifecycle = RelStorageLifecycle.make({
        profile, shard, sameDatabase, sql, run, query, destQuery, destSql, recorded: recordedKeys, blobChunk, shardFilter
      })

      // upload-blobs: what relstorage records is the S3 key (NULL for an inline blob) in blob_state; a
      // blob without a blob_state row is not migrated while its chunks exist, and gone once they do not
      const readRecorded = (wanted: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          const state = yield* destQuery(
            "read blob_state",
            `SELECT s.zoid::text AS zoid, s.tid::text AS tid, s.s3_key FROM blob_state s
             JOIN unnest($1::bigint[], $2::bigint[]) AS u(zoid, tid) ON s.zoid = u.zoid AND s.tid = u.tid`,
            keyArrays(wanted)
          )
          const out = new Map<string, Recorded.Recorded>(
            // the manifest names bucket keys: s3_key gets the prefix back
            state.map((r) => [keyOf(r), Recorded.objectKey(r.s3_key === null ? null : bucketKeyOf(profile.s3Prefix, String(r.s3_key)))])
          )
          const open = wanted.filter((k) => !out.has(k))
          if (open.length === 0) return out
          for (const key of yield* withChunks(open)) out.set(key, Recorded.notMigrated)
          return out
        })
      const recorded = (wanted: ReadonlyArray<string>) => {
        // a key from a manifest of another profile is not `zoid/tid`: it names no blob
        const bad = new Set(wanted.filter((k) => !/^-?\d+\/-?\d+$/.test(k)))
        return Effect.map(
          recordedByKey(wanted.filter((k) => !bad.has(k)), readRecorded),
          (found) => new Map([...found, ...[...bad].map((k) => [k, Recorded.notAKey("expected a blob key zoid/tid")] as const)])
        )
      }

      return {
        copy: {
        table: "blob_chunk",
        // the lock and the watermark stay in the source database; a blob_state elsewhere is named in the
        // watermark (its rows say what is done), and only a same-database watermark of an earlier version fits
        runKey: RunKey.resolve(sql, run, {
          relation: "blob_chunk",
          keyColumns: ["zoid", "tid"],
          result: "blob_state",
          resultWhere: destUrl === undefined ? undefined : `at ${describeUrl(destUrl)}`,
          legacy: { name: "blob_chunk", adopt: sameDatabase }
        }),
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
        recorded,
        finalize: lifecycle.finalize
        },
        plan: lifecycle.plan,
        afterCopy: lifecycle.afterCopy
      }
    })
  )
