// RelStorage data for the relstorage profile's tests: blob_chunk in either layout, blobs of one or
// more chunks, and the blob_state rows the tool writes.
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { createLargeObject } from "./Nice2Fixture.ts"

/** blob_chunk as RelStorage creates it: history-preserving (PK zoid, tid, chunk_num) or history-free. */
export const createBlobChunk = (layout: "history-preserving" | "history-free") =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* layout === "history-preserving"
      ? sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, tid bigint NOT NULL, chunk_num bigint NOT NULL,
          chunk oid NOT NULL, PRIMARY KEY (zoid, tid, chunk_num))`
      : sql`CREATE TABLE blob_chunk (zoid bigint NOT NULL, chunk_num bigint NOT NULL, tid bigint NOT NULL,
          chunk oid NOT NULL, PRIMARY KEY (zoid, chunk_num))`
  })

export const concat = (parts: ReadonlyArray<Uint8Array>) => new Uint8Array(Buffer.concat(parts.map((p) => Buffer.from(p))))

/** Inserts a blob of `chunks` (in chunk_num order); the large objects are created last chunk first. */
export const insertBlob = (zoid: number, tid: number, chunks: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const oids: Array<number> = []
    for (const c of [...chunks].reverse()) oids.unshift(yield* createLargeObject(c))
    for (let i = 0; i < chunks.length; i++) {
      yield* sql`INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk) VALUES (${zoid}, ${tid}, ${i}, ${oids[i]!})`
    }
    return concat(chunks)
  })

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
