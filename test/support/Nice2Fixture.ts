// Builders for the Nice2 schema the tool migrates: `_nice_binary` rows pointing at large objects, and the
// `nice_batch_job` row the tool checks before it starts. Everything runs through `SqlClient.SqlClient`,
// i.e. as whatever role the test connected with (the ordinary app role with `TestDatabase.layerClient`),
// so the large objects are owned by that role exactly as in production.
import { Effect } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { createHash, randomBytes as cryptoRandomBytes } from "node:crypto"

export const DELETE_UNREFERENCED_JOB = "nice2.dms.DeleteUnreferencedBinariesBatchJob"

const MiB = 1024 * 1024
/** Above this, bytes go in 1 MiB `lo_put` chunks: one bind parameter must stay under the 16 MiB message limit. */
const SINGLE_STATEMENT_MAX = 8 * MiB

export interface Nice2SchemaOptions {
  /** Value of `nice_batch_job.active` for the delete job (default false = safe to migrate). */
  readonly jobActive?: boolean
  /** Leave out the delete-job row (the tool must refuse to run). Default false. */
  readonly omitJobRow?: boolean
  /** Also add the `sha2 character(64)` column the tool adds on its first run. Default false. */
  readonly withSha2Column?: boolean
}

/** Creates `_nice_binary` and `nice_batch_job` (+ the delete-job row) in the current database. */
export const createNice2Schema = (
  options: Nice2SchemaOptions = {}
): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE _nice_binary (
      hash character(40) NOT NULL PRIMARY KEY,
      size bigint NOT NULL,
      mime_type varchar(255) NOT NULL,
      data oid
    )`
    yield* sql`CREATE TABLE nice_batch_job (id varchar(255) NOT NULL, active boolean NOT NULL)`
    if (options.omitJobRow !== true) {
      yield* sql`INSERT INTO nice_batch_job (id, active) VALUES (${DELETE_UNREFERENCED_JOB}, ${options.jobActive ?? false})`
    }
    if (options.withSha2Column === true) yield* addSha2Column
  })

/** `ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64)` (the tool's own DDL, idempotent). */
export const addSha2Column: Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64)`
})

/** Sets the delete job's `active` flag (e.g. to flip it while a run is in progress). */
export const setJobActive = (active: boolean): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`UPDATE nice_batch_job SET active = ${active} WHERE id = ${DELETE_UNREFERENCED_JOB}`
  })

export interface ObjectSpec {
  /** Content of the large object; null stores `data = NULL` and creates no large object. */
  readonly bytes: Uint8Array | null
  /** Default "application/octet-stream". */
  readonly mime?: string
  /** Override the row key (default: lowercase hex SHA-1 of `bytes`), e.g. to fake a SHA-1 mismatch. */
  readonly hash?: string
  /** Override `size` (default: `bytes.length`, 0 for null bytes), e.g. to fake a size mismatch. */
  readonly size?: number
  /** Pre-migrated row: stores this `sha2` (adds the column if missing). */
  readonly sha2?: string
  /**
   * Store this `data` instead of creating a large object, e.g. the oid of an unlinked LO (dangling
   * reference) or null. `bytes` still determine the default hash and size.
   */
  readonly dataOid?: number | null
}

export interface InsertedObject {
  /** The row key as stored. */
  readonly hash: string
  /** `data` as stored: the new large object's oid, the `dataOid` override, or null. */
  readonly oid: number | null
  /** `size` as stored. */
  readonly size: number
  /** Lowercase hex digests of `bytes` (null when bytes is null): what the tool should compute. */
  readonly sha1: string | null
  readonly sha256: string | null
  readonly bytes: Uint8Array | null
}

export const sha1Hex = (bytes: Uint8Array): string => createHash("sha1").update(bytes).digest("hex")
export const sha256Hex = (bytes: Uint8Array): string => createHash("sha256").update(bytes).digest("hex")

/**
 * Creates the large object (as the connected role) and its `_nice_binary` row.
 * Sizes up to tens of MiB are fine; above 8 MiB the LO is written in 1 MiB chunks.
 */
export const insertObject = (
  spec: ObjectSpec
): Effect.Effect<InsertedObject, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const { bytes } = spec
    const sha1 = bytes === null ? null : sha1Hex(bytes)
    const sha256 = bytes === null ? null : sha256Hex(bytes)
    // A NULL-data row still needs a unique key: a random one unless the caller chose one.
    const hash = spec.hash ?? sha1 ?? cryptoRandomBytes(20).toString("hex")
    const size = spec.size ?? bytes?.length ?? 0
    const oid = spec.dataOid !== undefined
      ? spec.dataOid
      : bytes === null
      ? null
      : yield* createLargeObject(bytes)
    if (spec.sha2 !== undefined) {
      yield* addSha2Column
      yield* sql`INSERT INTO _nice_binary (hash, size, mime_type, data, sha2)
        VALUES (${hash}, ${size}, ${spec.mime ?? "application/octet-stream"}, ${oid}, ${spec.sha2})`
    } else {
      yield* sql`INSERT INTO _nice_binary (hash, size, mime_type, data)
        VALUES (${hash}, ${size}, ${spec.mime ?? "application/octet-stream"}, ${oid})`
    }
    return { hash, oid, size, sha1, sha256, bytes }
  })

/** Creates a large object holding `bytes` and returns its oid. */
export const createLargeObject = (
  bytes: Uint8Array
): Effect.Effect<number, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    if (bytes.length <= SINGLE_STATEMENT_MAX) {
      const [row] = yield* sql<{ oid: number }>`SELECT lo_from_bytea(0, ${bytes}) AS oid`
      return row!.oid
    }
    // One transaction, so a failure halfway leaves no partial object behind.
    return yield* sql.withTransaction(Effect.gen(function*() {
      const [row] = yield* sql<{ oid: number }>`SELECT lo_create(0) AS oid`
      const oid = row!.oid
      for (let offset = 0; offset < bytes.length; offset += MiB) {
        yield* sql`SELECT lo_put(${oid}, ${offset}, ${bytes.subarray(offset, offset + MiB)})`
      }
      return oid
    }))
  })

/** Removes a large object but keeps rows pointing at it: the dangling-reference case. */
export const unlinkLargeObject = (oid: number): Effect.Effect<void, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`SELECT lo_unlink(${oid})`
  })

/** Reads a whole large object back (in 1 MiB chunks, so any size works). */
export const readLargeObject = (oid: number): Effect.Effect<Uint8Array, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    // lo_open's descriptor lives until the statement's implicit commit, so open+seek in one statement.
    const [row] = yield* sql<{ size: bigint }>`SELECT lo_lseek64(lo_open(${oid}, ${0x40000}), 0, 2) AS size`
    const size = Number(row!.size)
    const out = new Uint8Array(size)
    for (let offset = 0; offset < size; offset += MiB) {
      const [chunk] = yield* sql<{ data: Uint8Array }>`SELECT lo_get(${oid}, ${offset}, ${MiB}) AS data`
      out.set(chunk!.data, offset)
    }
    return out
  })

export interface Nice2Row {
  readonly hash: string
  /** `size` (bigint in PostgreSQL) as a JS number. */
  readonly size: number
  readonly mime_type: string
  readonly data: number | null
  /** null when not migrated yet, or when the `sha2` column does not exist yet. */
  readonly sha2: string | null
}

/** All `_nice_binary` rows ordered by hash; works before and after the tool adds `sha2`. */
export const readRows: Effect.Effect<ReadonlyArray<Nice2Row>, SqlError.SqlError, SqlClient.SqlClient> = Effect.gen(
  function*() {
    const sql = yield* SqlClient.SqlClient
    const [col] = yield* sql<{ present: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = '_nice_binary' AND column_name = 'sha2'
      ) AS present`
    const rows = col!.present
      ? yield* sql<{ hash: string; size: bigint; mime_type: string; data: number | null; sha2: string | null }>`
          SELECT hash, size, mime_type, data, sha2 FROM _nice_binary ORDER BY hash`
      : yield* sql<{ hash: string; size: bigint; mime_type: string; data: number | null; sha2: null }>`
          SELECT hash, size, mime_type, data, NULL::text AS sha2 FROM _nice_binary ORDER BY hash`
    return rows.map((r) => ({ hash: r.hash, size: Number(r.size), mime_type: r.mime_type, data: r.data, sha2: r.sha2 }))
  }
)

/**
 * Deterministic pseudo-random bytes (xorshift32 seeded through splitmix32): same (n, seed) -> same bytes
 * on every platform. About 1 ms per MiB, so tens of MiB are cheap.
 */
export const randomBytes = (n: number, seed: number): Uint8Array => {
  // splitmix32 spreads nearby seeds apart and never leaves xorshift in its all-zero fixed point.
  let z = (seed + 0x9e3779b9) | 0
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  let x = (z ^ (z >>> 16)) | 0
  if (x === 0) x = 0x6d2b79f5
  const out = new Uint8Array(n)
  let i = 0
  for (; i + 4 <= n; i += 4) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    out[i] = x & 0xff
    out[i + 1] = (x >>> 8) & 0xff
    out[i + 2] = (x >>> 16) & 0xff
    out[i + 3] = (x >>> 24) & 0xff
  }
  if (i < n) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    for (let k = 0; i < n; i++, k += 8) out[i] = (x >>> k) & 0xff
  }
  return out
}
