/**
 * Reading large objects with SQL functions only (`lo_get`), so it works through any pool, without a
 * transaction per object and without the original's 8 KiB `loread` round trips: a whole small object
 * comes back in one round trip, a large one in chunks kept under the driver's message limit.
 */
import { PgTypes } from "@effect/sql-pg"
import { Effect } from "effect"
import { SqlClient, SqlError } from "effect/sql"

/**
 * The default `--read-chunk-size`, 2 MiB: the driver's message buffer and `lo_get`'s copy stay small.
 * Measured (BENCHMARKS.md, "Defaults chosen"): one 1 GiB object peaked at 248-262 MiB RSS with 2 MiB
 * chunks against 274-307 MiB with 8 MiB, for about 10 % less throughput on large objects.
 */
export const readChunkSize = 2 * 1024 * 1024

/** INV_READ of `lo_open` */
export const invRead = 0x40000

/**
 * SQL: a LATERAL join giving `<alias>.size`, the length of the large object `oid` (an SQL expression of
 * type oid), NULL when it names none, for a statement that scans many rows (plan). Each descriptor is
 * closed at once: `lo_lseek64(lo_open(…))` over many rows in one statement keeps every descriptor open
 * until the transaction ends, and PostgreSQL looks for a free descriptor slot by a linear scan, so the
 * cost grows with the square of the rows (measured: 11 s for 100,000 objects, 81 s for 300,000; this
 * way 2.6 s for 300,000). `OFFSET 0` keeps `lo_open` from being inlined into (and run by) both uses;
 * the target list is evaluated in order, so the length is read before the close (were it not, the
 * statement would fail on the closed descriptor, never return a wrong length).
 */
export const lengthJoin = (oid: string, alias: string): string =>
  `LEFT JOIN LATERAL (
     SELECT lo_lseek64(o.fd, 0, 2) AS size, lo_close(o.fd) AS closed
     FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_largeobject_metadata m WHERE m.oid = ${oid})
                  THEN lo_open(${oid}, ${invRead}) END AS fd OFFSET 0) o
   ) ${alias} ON true`

/** SQLSTATE of `lo_get` on an oid that names no large object. */
export const undefinedObject = "42704"
/** SQLSTATE of `lo_get` on a large object the role may not read. */
export const insufficientPrivilege = "42501"

export const sqlState = (error: SqlError.SqlError): string | undefined => {
  const code = (error.reason.cause as { readonly code?: unknown } | undefined)?.code
  return typeof code === "string" ? code : undefined
}

/**
 * Streams the large object `oid` to `onChunk`, `chunkSize` bytes at a time, and returns its length.
 * Reading stops at the first short chunk, so the object's real length decides, not the row's claim;
 * and at `cap` bytes, so a row that understates its size (10 bytes claimed, 300 MiB stored) costs at
 * most the claim plus one byte before it is found out: `cap` is then the length returned.
 */
export const read = <E, R>(
  oid: number,
  onChunk: (chunk: Uint8Array) => Effect.Effect<void, E, R>,
  chunkSize: number = readChunkSize,
  cap: number = Number.POSITIVE_INFINITY
): Effect.Effect<number, E | SqlError.SqlError, R | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    let offset = 0
    while (offset < cap) {
      const want = Math.min(chunkSize, cap - offset)
      const rows = yield* sql<{ readonly chunk: Uint8Array }>`SELECT lo_get(${oid}, ${offset}, ${want}) AS chunk`
      const chunk = rows[0]?.chunk ?? new Uint8Array(0)
      if (chunk.length > 0) yield* onChunk(chunk)
      offset += chunk.length
      if (chunk.length < want) return offset
    }
    return offset
  })

/** The length of the large object `oid` (the descriptor ends with the statement's own transaction). */
export const length = (oid: number): Effect.Effect<number, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ readonly size: bigint | number | string }>`
      SELECT lo_lseek64(lo_open(${oid}, ${invRead}), 0, 2) AS size`
    return Number(rows[0]?.size ?? 0)
  })

/**
 * Whether a failed read is this object's problem, not the run's: it names no large object (42704), the
 * role may not read it (42501), its bytes are bad data (class 22) or corrupt on disk (XX001, XX002).
 * Such a row fails on its own; anything else (a lost connection, the server out of resources, a
 * statement timeout) concerns every read and is retried, then ends the run.
 */
export const isPerObject = (error: SqlError.SqlError): boolean => {
  const state = sqlState(error)
  if (state === undefined) return false
  return state === undefinedObject || state === insufficientPrivilege || state.startsWith("22") ||
    state === "XX001" || state === "XX002"
}

/**
 * An `oid[]` parameter. Large object oids are unsigned 32-bit: as plain numbers, an array that mixes
 * oids below and above 2^31 is refused by the driver (it infers int4 for some elements and int8 for
 * others), so oid arrays are always sent typed.
 */
export const oidArray = (oids: ReadonlyArray<number>): PgTypes.Parameter => {
  const parameter = PgTypes.array(oids, PgTypes.OID.oid)
  if (parameter._tag === "Failure") throw parameter.failure // only a non-integer oid: a bug, not bad data
  return parameter.success
}

/**
 * Reads up to `cap` bytes from the start of each large object, all in one statement (one round trip
 * for a whole batch of small objects); one result per item, in order. Fails (SQLSTATE 42704) when any
 * of the oids names no large object: the caller then reads the batch one by one to tell which.
 */
export const readMany = (
  items: ReadonlyArray<{ readonly oid: number; readonly cap: number }>
): Effect.Effect<ReadonlyArray<Uint8Array>, SqlError.SqlError, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ readonly chunk: Uint8Array | null }>`
      SELECT lo_get(u.oid, 0, u.cap) AS chunk
      FROM unnest(${oidArray(items.map((i) => i.oid))}, ${items.map((i) => i.cap)}::int4[]) WITH ORDINALITY AS u(oid, cap, n)
      ORDER BY u.n`
    return rows.map((r) => r.chunk ?? new Uint8Array(0))
  })
