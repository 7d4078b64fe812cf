// RelStorage's blob_chunk as RelStorage 4.2 creates it (both layouts), the databases RelStorage 4.2 itself
// made (test/data/zodb/relstorage/, restored with psql), blobs of one or several chunks, and readers
// of what the relstorage profile leaves behind (blob_state, large objects), for the relstorage tests.
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fixturesDir } from "../zodb/support/Fixtures.ts"
import { restoreDump } from "./Zodb.ts"
import { createLargeObject } from "./Nice2Fixture.ts"
import { TestDatabase } from "./Postgres.ts"

export type Layout = "history-preserving" | "history-free"

/**
 * blob_chunk as RelStorage 4.2's schema installer leaves it (compare `relstorage-{hp,hf}.sql`): next to
 * an `object_state` (RelStorage's columns; hp without its foreign key to `transaction`), primary key
 * `blob_chunk_pk`, index `blob_chunk_lookup` on (zoid, tid) / (zoid), foreign key `blob_chunk_fk` to
 * object_state ON DELETE CASCADE, and the delete trigger `blob_chunk_delete`. **No index on
 * `blob_chunk(chunk)`**: RelStorage dropped `blob_chunk_loid` in 3.0a4 (cc922d52); `chunkIndex` adds
 * one, as an administrator would (older databases still have it).
 */
export const createBlobChunk = (layout: Layout, options: { readonly chunkIndex?: boolean; readonly trigger?: boolean } = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (layout === "history-preserving") {
      yield* sql`CREATE TABLE object_state (zoid bigint NOT NULL, tid bigint NOT NULL, prev_tid bigint NOT NULL,
        md5 character(32), state_size bigint NOT NULL, state bytea,
        CONSTRAINT object_state_state_size_check CHECK ((state_size >= 0)),
        CONSTRAINT object_state_tid_check CHECK ((tid > 0)),
        CONSTRAINT object_state_pk PRIMARY KEY (zoid, tid))`
      yield* sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, tid bigint NOT NULL, chunk_num bigint NOT NULL,
        chunk oid NOT NULL, CONSTRAINT blob_chunk_pk PRIMARY KEY (zoid, tid, chunk_num))`
      yield* sql`CREATE INDEX blob_chunk_lookup ON blob_chunk USING btree (zoid, tid)`
      yield* sql`ALTER TABLE blob_chunk ADD CONSTRAINT blob_chunk_fk FOREIGN KEY (zoid, tid)
        REFERENCES object_state (zoid, tid) ON DELETE CASCADE`
    } else {
      yield* sql`CREATE TABLE object_state (zoid bigint NOT NULL, tid bigint NOT NULL, state_size bigint NOT NULL,
        state bytea,
        CONSTRAINT object_state_state_size_check CHECK ((state_size >= 0)),
        CONSTRAINT object_state_tid_check CHECK ((tid > 0)),
        CONSTRAINT object_state_pkey PRIMARY KEY (zoid))`
      yield* sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, chunk_num bigint NOT NULL, tid bigint NOT NULL,
        chunk oid NOT NULL, CONSTRAINT blob_chunk_pk PRIMARY KEY (zoid, chunk_num))`
      yield* sql`CREATE INDEX blob_chunk_lookup ON blob_chunk USING btree (zoid)`
      yield* sql`ALTER TABLE blob_chunk ADD CONSTRAINT blob_chunk_fk FOREIGN KEY (zoid)
        REFERENCES object_state (zoid) ON DELETE CASCADE`
    }
    if (options.trigger !== false) yield* createDeleteTrigger
    if (options.chunkIndex === true) yield* sql`CREATE INDEX blob_chunk_loid ON blob_chunk (chunk)`
  })

/**
 * RelStorage's own trigger, verbatim from the 4.2 dumps (procs/blob_chunk_delete_trigger.sql): before a
 * chunk row is deleted it counts the rows holding that large object and unlinks it when this is the last
 * one. The count is a scan of blob_chunk unless `blob_chunk(chunk)` is indexed.
 */
export const createDeleteTrigger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE FUNCTION blob_chunk_delete_trigger() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
  -- Unlink large object data file after blob_chunk row deletion
  DECLARE
  cnt integer;
BEGIN
  SELECT count(*) into cnt FROM blob_chunk WHERE chunk=OLD.chunk;
  IF (cnt = 1) THEN
    -- Last reference to this oid, unlink
    PERFORM lo_unlink(OLD.chunk);
  END IF;
  RETURN OLD;
END;
$$`)
  yield* sql.unsafe(`CREATE TRIGGER blob_chunk_delete BEFORE DELETE ON blob_chunk
    FOR EACH ROW EXECUTE FUNCTION blob_chunk_delete_trigger()`)
})

/** The object_state rows (zoid, tid) a blob's chunks need (blob_chunk_fk); no-op for those that exist. */
export const insertObjectStates = (keys: ReadonlyArray<readonly [number, number]>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (keys.length === 0) return
    const [hp] = yield* sql<{ readonly hp: boolean }>`SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute
      WHERE attrelid = to_regclass('object_state') AND attname = 'prev_tid') AS hp`
    const zoids = keys.map((k) => k[0])
    const tids = keys.map((k) => k[1])
    yield* hp!.hp
      ? sql`INSERT INTO object_state (zoid, tid, prev_tid, state_size)
          SELECT z, t, 0, 0 FROM unnest(${zoids}::bigint[], ${tids}::bigint[]) AS u(z, t) ON CONFLICT DO NOTHING`
      : sql`INSERT INTO object_state (zoid, tid, state_size)
          SELECT z, t, 0 FROM unnest(${zoids}::bigint[], ${tids}::bigint[]) AS u(z, t) ON CONFLICT DO NOTHING`
  })

export type Mode = "hf" | "hp"

/** What RelStorage 4.2 wrote into the dump of `mode` (expected/relstorage-{mode}-blobs.jsonl). */
export interface DumpBlob {
  /** `zoid/tid` in decimal, the profile's key */
  readonly key: string
  readonly zoid: bigint
  readonly tid: bigint
  readonly size: number
  readonly sha256: string
}

export const dumpBlobs = (mode: Mode): ReadonlyArray<DumpBlob> =>
  readFileSync(join(fixturesDir, "expected", `relstorage-${mode}-blobs.jsonl`), "utf8").split("\n").filter((l) => l.trim() !== "")
    .map((line) => {
      const b = JSON.parse(line) as { zoid: string; tid: string; size: number; sha256: string }
      const zoid = BigInt(`0x${b.zoid}`)
      const tid = BigInt(`0x${b.tid}`)
      return { key: `${zoid}/${tid}`, zoid, tid, size: b.size, sha256: b.sha256 }
    })
    .sort((a, b) => (a.zoid < b.zoid ? -1 : a.zoid > b.zoid ? 1 : a.tid < b.tid ? -1 : a.tid > b.tid ? 1 : 0))

/**
 * Restores the RelStorage 4.2 database of `mode` (pg_dump plain, with its large objects) into the test
 * database, as its ordinary owner role, with `psql -v ON_ERROR_STOP=1` (the fixtures' README).
 */
export const restoreRelStorage = (mode: Mode) =>
  Effect.gen(function*() {
    yield* restoreDump(yield* TestDatabase, join(fixturesDir, "relstorage", `relstorage-${mode}.sql`))
  })

export const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex")
export const concat = (parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))))

/**
 * Inserts a blob of `chunks` (in chunk_num order): new large objects for byte chunks (created last chunk
 * first, so oid order is not chunk order), or existing ones given by oid.
 */
export const insertBlob = (zoid: number, tid: number, chunks: ReadonlyArray<Uint8Array | number>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* insertObjectStates([[zoid, tid]])
    const oids: Array<number> = []
    for (const c of [...chunks].reverse()) oids.unshift(typeof c === "number" ? c : yield* createLargeObject(c))
    for (let i = 0; i < oids.length; i++) {
      yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (${zoid}, ${tid}, ${i}, ${oids[i]!})`
    }
    return { oids, bytes: concat(chunks.filter((c): c is Uint8Array => typeof c !== "number")) }
  })

/** `insertBlob` when only the blob's bytes matter. */
export const insertBlobBytes = (zoid: number, tid: number, chunks: ReadonlyArray<Uint8Array>) =>
  Effect.map(insertBlob(zoid, tid, chunks), (blob) => blob.bytes)

export interface BlobStateRow {
  readonly zoid: string
  readonly tid: string
  readonly blob_size: string
  readonly data: Uint8Array | null
  readonly s3_key: string | null
}

/** blob_state in key order, in the database of the SqlClient provided. */
export const readState = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<BlobStateRow>`SELECT zoid::text, tid::text, blob_size::text, data, s3_key FROM blob_state ORDER BY zoid, tid`
})

export const largeObjectExists = (oid: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata WHERE oid = ${oid}`
    return Number(rows[0]!.n) === 1
  })

/** The (zoid/tid) keys that still have chunks. */
export const chunkKeys = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly key: string }>`SELECT DISTINCT zoid || '/' || tid AS key FROM blob_chunk ORDER BY 1`
  return rows.map((r) => r.key)
})

export const largeObjectCount = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata`
  return Number(row!.n)
})

/** Runs `effect` on the database at `url` (e.g. the blob_state database of --dest-pg-url). */
export const onDatabase = (url: string) => <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
  effect.pipe(Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: 1 })))
