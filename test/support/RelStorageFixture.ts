// RelStorage's blob_chunk in either layout, blobs of one or several chunks, and readers of what the
// relstorage profile leaves behind (blob_state, large objects), for the relstorage tests.
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { createLargeObject } from "./Nice2Fixture.ts"

export type Layout = "history-preserving" | "history-free"

/** blob_chunk as RelStorage creates it: history-preserving (PK zoid, tid, chunk_num) or history-free. */
export const createBlobChunk = (layout: Layout) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* layout === "history-preserving"
      ? sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, tid bigint NOT NULL, chunk_num bigint NOT NULL,
          chunk oid NOT NULL, PRIMARY KEY (zoid, tid, chunk_num))`
      : sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, chunk_num bigint NOT NULL, tid bigint NOT NULL,
          chunk oid NOT NULL, PRIMARY KEY (zoid, chunk_num))`
    // as RelStorage's schema installer creates it (its delete trigger looks chunks up by oid)
    yield* sql`CREATE INDEX blob_chunk_loid ON blob_chunk (chunk)`
  })

/**
 * RelStorage's own trigger (relstorage/adapters/postgresql/schema.py): deleting a chunk unlinks its large
 * object when no other chunk references it.
 */
export const createDeleteTrigger = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql.unsafe(`CREATE FUNCTION blob_chunk_delete_trigger() RETURNS TRIGGER AS $t$
    DECLARE cnt integer;
    BEGIN
      SELECT count(*) INTO cnt FROM blob_chunk WHERE chunk = OLD.chunk;
      IF (cnt = 1) THEN PERFORM lo_unlink(OLD.chunk); END IF;
      RETURN OLD;
    END; $t$ LANGUAGE plpgsql`)
  yield* sql.unsafe(`CREATE TRIGGER blob_chunk_delete BEFORE DELETE ON blob_chunk
    FOR EACH ROW EXECUTE PROCEDURE blob_chunk_delete_trigger()`)
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
