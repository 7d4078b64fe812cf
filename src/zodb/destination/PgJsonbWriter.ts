/**
 * Writes source transactions into a zodb-pgjsonb 1.14 destination, one source transaction per
 * PostgreSQL transaction, as zodb-pgjsonb's own write path lays the rows out (batch.py, see
 * docs/zodb-pgjsonb-destination.md), made safe for commits in any order and for replays:
 *
 * - transaction_log: (tid, username, description, extension) with username/description as TEXT (the
 *   source's bytes decoded as UTF-8, like zodb-pgjsonb's `.decode("utf-8")`) and the extension bytes as
 *   given (zodb-pgjsonb writes `json.dumps(ext_dict)` as UTF-8, or b"" for an empty one: the caller's
 *   job). `ON CONFLICT (tid) DO NOTHING`: a transaction already there is not written again.
 * - object_state: one row per oid, the revision with the highest tid: an upsert that only replaces an
 *   older revision (`WHERE object_state.tid < EXCLUDED.tid`), so a later-committed older transaction
 *   never overwrites a newer one. Rows are sent in zoid order (two writers lock rows in the same order).
 * - Deletions (a record without data: deleteObject, undo of a creation): zodb-pgjsonb deletes the
 *   object_state row and, history-preserving, adds a tombstone `(zoid, tid, '', '', NULL, 0, '{}')` to
 *   object_history (batch.py:122-151). Out of order, a deleted row could come back from an older write,
 *   so during the copy the deletion is a tombstone row in object_state too (state NULL, which
 *   zodb-pgjsonb never writes), competing by tid like any revision; `finalize` deletes them.
 * - object_history (history-preserving): every revision, tombstones included, `ON CONFLICT DO NOTHING`;
 *   zodb-pgjsonb keeps the previous revisions only (copy-before-overwrite), so `finalize` removes the
 *   rows that are the current revision in object_state (its `compact_history()`). Copying only the
 *   displaced row, as zodb-pgjsonb does, loses a revision when two writers race on one oid; it is
 *   copied too (`ON CONFLICT DO NOTHING`), for the current rows written before this copy (an earlier,
 *   finalized run, or zodb-pgjsonb itself), which object_history does not hold.
 * - blob_state: (zoid, tid, blob_size, data | s3_key), every version kept; s3_key is
 *   `blobs/{zoid:016x}/{tid:016x}.blob` WITHOUT the s3-prefix (zodb-pgjsonb's S3 client adds it).
 *
 * Rows go in with `INSERT ... SELECT FROM unnest($n::type[], ...)`: one statement per source transaction
 * (transaction_log, object_state, object_history and blob_state as data-modifying CTEs), which commits on
 * its own; a transaction past `maxStatementBytes` / `maxStatementRows` is split into several statements
 * inside one PostgreSQL transaction.
 *
 * Resume: transaction_log is the record of what is committed (its row commits with the objects), so
 * `committedTids` answers exactly; the watermark table (`zodb_convert_watermark`, one row, dropped by
 * `finalize`) is only where a resumed run may start reading the source.
 */
import { PgTypes } from "@effect/sql-pg"
import { Context, Effect, Layer } from "effect"
import { backoff, defaultPolicy } from "../../core/Retry.ts"
import { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, type TableBusy } from "../../domain/Errors.ts"
import { isRetryableSql } from "../../postgres/Statement.ts"
import { transaction } from "../../postgres/Transaction.ts"
import { DestinationNotPgJsonb, DestinationSchemaMismatch, InvalidTransaction } from "./Errors.ts"
import * as PgJsonbSchema from "./PgJsonbSchema.ts"

// ---- input -------------------------------------------------------------------------------------------

/** A blob of a record: inline bytes (below the blob threshold) or the S3 key it was uploaded under. */
export interface PgJsonbBlob {
  readonly size: number
  /** the bytes, stored in blob_state.data */
  readonly data?: Uint8Array | undefined
  /** `blobs/{zoid:016x}/{tid:016x}.blob` (see `blobS3Key`), without the s3-prefix */
  readonly s3Key?: string | undefined
}

export interface PgJsonbRecord {
  /** the oid as an unsigned 64-bit number (or already as a signed bigint): stored as bigint, >= 2^63 negative */
  readonly zoid: bigint
  readonly classMod: string | null
  readonly className: string | null
  /** the state as zodb-json-codec's JSON text (no `\u0000`: zodb-pgjsonb's `@ns` sanitizing is the codec's); null = no data (deletion) */
  readonly stateJson: string | null
  /** the pickle's length in bytes */
  readonly stateSize: number
  /** referenced oids, unsigned or signed as `zoid` */
  readonly refs: ReadonlyArray<bigint>
  readonly blob?: PgJsonbBlob | undefined
}

export interface PgJsonbTransaction {
  readonly tid: bigint
  readonly user: Uint8Array
  readonly description: Uint8Array
  /** stored as is: zodb-pgjsonb's form is `json.dumps(extension_dict).encode("utf-8")`, b"" when empty */
  readonly extension: Uint8Array
  readonly records: ReadonlyArray<PgJsonbRecord>
}

export interface CommitResult {
  readonly tid: bigint
  /** transaction_log already had the tid: nothing was written */
  readonly alreadyCommitted: boolean
  /** records with data */
  readonly objects: number
  readonly deletions: number
  readonly blobs: number
  /** statements sent (1 unless the transaction was split) */
  readonly statements: number
}

export interface WriterOptions {
  readonly historyPreserving: boolean
  /**
   * user/description that are not UTF-8 or hold NUL (PostgreSQL text cannot): "fail" (default) ends the
   * commit with `InvalidTransaction`, "replace" stores U+FFFD instead (zodb-pgjsonb itself fails: its
   * `.decode("utf-8")` raises, and PostgreSQL refuses NUL)
   */
  readonly invalidText?: "fail" | "replace" | undefined
  /** a statement carries at most about this many bytes of state and blob data (default 32 MiB) */
  readonly maxStatementBytes?: number | undefined
  /** and at most this many rows (default 20,000) */
  readonly maxStatementRows?: number | undefined
}

const hex16 = (n: bigint) => BigInt.asUintN(64, n).toString(16).padStart(16, "0")

/** The S3 key of a blob as zodb-pgjsonb writes it in blob_state.s3_key (batch.py:186), prefix not included. */
export const blobS3Key = (zoid: bigint, tid: bigint): string => `blobs/${hex16(zoid)}/${hex16(tid)}.blob`

// ---- preparing a transaction ------------------------------------------------------------------------------

const MIN_I64 = -(1n << 63n)
const MAX_U64 = (1n << 64n) - 1n
const MAX_I32 = 2 ** 31 - 1

/** `n` as PostgreSQL's bigint: an unsigned 64-bit value >= 2^63 becomes negative; undefined out of range */
const toInt64 = (n: bigint): bigint | undefined => (n < MIN_I64 || n > MAX_U64 ? undefined : BigInt.asIntN(64, n))

/** Whether JSON text holds a `\u0000` escape (jsonb refuses it) or a raw NUL. */
export const hasNulEscape = (json: string): boolean => {
  if (json.includes("\u0000")) return true
  let at = json.indexOf("\\u0000")
  while (at !== -1) {
    // the backslash starts an escape when an even number of backslashes precede it
    let k = at - 1
    while (k >= 0 && json.charCodeAt(k) === 92) k--
    if ((at - 1 - k) % 2 === 0) return true
    at = json.indexOf("\\u0000", at + 1)
  }
  return false
}

interface Row {
  readonly zoid: bigint
  readonly classMod: string
  readonly className: string
  readonly state: string | null
  readonly stateSize: number
  readonly refs: string
  readonly blob: { readonly size: bigint; readonly data: Uint8Array | null; readonly s3Key: string | null } | undefined
  readonly bytes: number
}

interface Prepared {
  readonly tid: bigint
  readonly user: string
  readonly description: string
  readonly extension: Uint8Array
  /** sorted by zoid, one per zoid */
  readonly rows: ReadonlyArray<Row>
}

const strict = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const lenient = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true })

const prepare = (tx: PgJsonbTransaction, invalidText: "fail" | "replace"): Prepared | InvalidTransaction => {
  const tid = toInt64(tx.tid)
  if (tid === undefined) return new InvalidTransaction({ tid: tx.tid, problem: "the tid is not a 64-bit number" })
  const text = (field: string, bytes: Uint8Array): string | InvalidTransaction => {
    let s: string
    try {
      s = strict.decode(bytes)
    } catch {
      if (invalidText === "fail") return new InvalidTransaction({ tid, problem: `the ${field} is not UTF-8 (zodb-pgjsonb stores it as text)` })
      s = lenient.decode(bytes)
    }
    if (s.includes("\u0000")) {
      if (invalidText === "fail") return new InvalidTransaction({ tid, problem: `the ${field} holds a NUL character (PostgreSQL text cannot)` })
      s = s.replaceAll("\u0000", "\ufffd")
    }
    return s
  }
  const user = text("user", tx.user)
  if (typeof user !== "string") return user
  const description = text("description", tx.description)
  if (typeof description !== "string") return description

  const byZoid = new Map<bigint, Row>()
  for (const r of tx.records) {
    const zoid = toInt64(r.zoid)
    const fail = (problem: string) => new InvalidTransaction({ tid, zoid: r.zoid, problem })
    if (zoid === undefined) return fail("the oid is not a 64-bit number")
    const refs: Array<string> = []
    for (const ref of r.refs) {
      const v = toInt64(ref)
      if (v === undefined) return fail(`reference ${ref} is not a 64-bit number`)
      refs.push(v.toString())
    }
    if (r.stateJson === null) {
      if (r.blob !== undefined) return fail("a record without data has a blob")
      // zodb-pgjsonb's tombstone (batch.py:145)
      byZoid.set(zoid, { zoid, classMod: "", className: "", state: null, stateSize: 0, refs: "{}", blob: undefined, bytes: 64 })
      continue
    }
    if (r.classMod === null || r.className === null) return fail("a record with data has no class (class_mod and class_name are NOT NULL)")
    if (r.classMod.includes("\u0000") || r.className.includes("\u0000")) return fail("the class name holds a NUL character")
    if (!Number.isInteger(r.stateSize) || r.stateSize < 0 || r.stateSize > MAX_I32) return fail(`state size ${r.stateSize} does not fit state_size integer`)
    if (hasNulEscape(r.stateJson)) return fail("the state JSON holds \\u0000, which jsonb refuses (zodb-pgjsonb stores such strings as {\"@ns\": base64})")
    let blob: Row["blob"]
    if (r.blob !== undefined) {
      const b = r.blob
      if (!Number.isSafeInteger(b.size) || b.size < 0) return fail(`blob size ${b.size} is not a size`)
      if ((b.data === undefined) === (b.s3Key === undefined)) return fail("a blob needs exactly one of data and s3Key")
      if (b.data !== undefined && b.data.length !== b.size) return fail(`the blob has ${b.data.length} bytes, its size says ${b.size}`)
      if (b.s3Key !== undefined && b.s3Key !== blobS3Key(zoid, tid)) {
        return fail(`s3 key ${b.s3Key} is not ${blobS3Key(zoid, tid)} (zodb-pgjsonb's key, without the s3-prefix)`)
      }
      blob = { size: BigInt(b.size), data: b.data ?? null, s3Key: b.s3Key ?? null }
    }
    byZoid.set(zoid, {
      zoid,
      classMod: r.classMod,
      className: r.className,
      state: r.stateJson,
      stateSize: r.stateSize,
      refs: `{${refs.join(",")}}`,
      blob,
      bytes: r.stateJson.length + r.classMod.length + r.className.length + refs.length * 20 + (blob?.data?.length ?? 0) + 64
    })
  }
  const rows = [...byZoid.values()].sort((a, b) => (a.zoid < b.zoid ? -1 : a.zoid > b.zoid ? 1 : 0))
  return { tid, user, description, extension: tx.extension, rows }
}

/** `rows` cut into pieces of at most `maxBytes` (one oversized row alone) and `maxRows` rows. */
const chunks = (rows: ReadonlyArray<Row>, maxBytes: number, maxRows: number): ReadonlyArray<ReadonlyArray<Row>> => {
  const out: Array<Array<Row>> = []
  let cur: Array<Row> = []
  let bytes = 0
  for (const r of rows) {
    if (cur.length > 0 && (bytes + r.bytes > maxBytes || cur.length >= maxRows)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(r)
    bytes += r.bytes
  }
  if (cur.length > 0) out.push(cur)
  return out
}

// ---- statements -------------------------------------------------------------------------------------------

const typed = (values: ReadonlyArray<unknown>, oid: number): PgTypes.Parameter => {
  const p = PgTypes.array(values, oid)
  if (p._tag === "Failure") throw p.failure
  return p.success
}

const objectColumns = "zoid, tid, class_mod, class_name, state, state_size, refs"

/**
 * One statement: optionally the transaction_log row, the rows' object_state upsert (and object_history
 * insert), their blob_state rows. `guard`: skip the rows when transaction_log had the tid before the
 * statement (a replay of a committed transaction).
 */
const statement = (
  p: Prepared,
  rows: ReadonlyArray<Row>,
  options: { readonly log: boolean; readonly guard: boolean; readonly historyPreserving: boolean }
): { readonly text: string; readonly params: ReadonlyArray<unknown> } => {
  const params: Array<unknown> = [PgTypes.int8(p.tid)]
  const arg = (v: unknown) => {
    params.push(v)
    return `$${params.length}`
  }
  const ctes: Array<string> = []
  if (options.log) {
    ctes.push(`t AS (
      INSERT INTO transaction_log (tid, username, description, extension)
      VALUES ($1, ${arg(PgTypes.text(p.user))}, ${arg(PgTypes.text(p.description))}, ${arg(PgTypes.bytea(p.extension))})
      ON CONFLICT (tid) DO NOTHING RETURNING tid)`)
  }
  if (options.guard) ctes.push(`fresh AS (SELECT NOT EXISTS (SELECT 1 FROM transaction_log WHERE tid = $1) AS ok)`)
  const when = options.guard ? " WHERE (SELECT ok FROM fresh)" : ""
  if (rows.length > 0) {
    ctes.push(`u AS MATERIALIZED (
      SELECT u.zoid, u.class_mod, u.class_name, u.state::jsonb AS state, u.state_size, u.refs::bigint[] AS refs
      FROM unnest(${arg(typed(rows.map((r) => r.zoid), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(rows.map((r) => r.classMod), PgTypes.OID.text))}::text[],
        ${arg(typed(rows.map((r) => r.className), PgTypes.OID.text))}::text[],
        ${arg(typed(rows.map((r) => r.state), PgTypes.OID.text))}::text[],
        ${arg(typed(rows.map((r) => r.stateSize), PgTypes.OID.int4))}::int4[],
        ${arg(typed(rows.map((r) => r.refs), PgTypes.OID.text))}::text[])
        AS u(zoid, class_mod, class_name, state, state_size, refs)${when})`)
    if (options.historyPreserving) {
      ctes.push(`h AS (
        INSERT INTO object_history (${objectColumns})
        SELECT zoid, $1, class_mod, class_name, state, state_size, refs FROM u
        ON CONFLICT (zoid, tid) DO NOTHING)`)
      // the revision this one displaces, when it is not in object_history yet: one written before this
      // copy (an earlier, finalized run, or zodb-pgjsonb itself); the copy's own are there already
      ctes.push(`p AS (
        INSERT INTO object_history (${objectColumns})
        SELECT o.zoid, o.tid, o.class_mod, o.class_name, o.state, o.state_size, o.refs
        FROM object_state o JOIN u ON o.zoid = u.zoid WHERE o.tid < $1
        ON CONFLICT (zoid, tid) DO NOTHING)`)
    }
    ctes.push(`s AS (
      INSERT INTO object_state (${objectColumns})
      SELECT zoid, $1, class_mod, class_name, state, state_size, refs FROM u ORDER BY zoid
      ON CONFLICT (zoid) DO UPDATE SET tid = EXCLUDED.tid, class_mod = EXCLUDED.class_mod,
        class_name = EXCLUDED.class_name, state = EXCLUDED.state, state_size = EXCLUDED.state_size,
        refs = EXCLUDED.refs
      WHERE object_state.tid < EXCLUDED.tid)`)
    const blobs = rows.flatMap((r) => (r.blob === undefined ? [] : [{ zoid: r.zoid, ...r.blob }]))
    if (blobs.length > 0) {
      // an upsert sets both columns: a replay that moved a blob between inline and S3 leaves one of them
      ctes.push(`b AS (
        INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key)
        SELECT b.zoid, $1, b.blob_size, b.data, b.s3_key
        FROM unnest(${arg(typed(blobs.map((b) => b.zoid), PgTypes.OID.int8))}::bigint[],
          ${arg(typed(blobs.map((b) => b.size), PgTypes.OID.int8))}::bigint[],
          ${arg(typed(blobs.map((b) => b.data), PgTypes.OID.bytea))}::bytea[],
          ${arg(typed(blobs.map((b) => b.s3Key), PgTypes.OID.text))}::text[]) AS b(zoid, blob_size, data, s3_key)${when}
        ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = EXCLUDED.data,
          s3_key = EXCLUDED.s3_key)`)
    }
  }
  const result = options.log ? `SELECT (SELECT count(*) FROM t)::int AS inserted` : `SELECT 1 AS inserted`
  return { text: `WITH ${ctes.join(",\n")}\n${result}`, params }
}

/** A row of a batch: the row and the tid of its transaction. */
interface BatchRow extends Row {
  readonly tid: bigint
}

/**
 * One statement for the rows of several transactions whose transaction_log rows were just inserted
 * in the same PostgreSQL transaction: every revision into object_history (history-preserving), the
 * latest revision of each oid into object_state (one upsert may touch a row once; the tid guard keeps
 * a newer revision already there), every blob_state row.
 */
const batchStatement = (
  rows: ReadonlyArray<BatchRow>,
  options: { readonly historyPreserving: boolean }
): { readonly text: string; readonly params: ReadonlyArray<unknown> } => {
  const params: Array<unknown> = []
  const arg = (v: unknown) => {
    params.push(v)
    return `$${params.length}`
  }
  const latest = new Map<bigint, BatchRow>()
  for (const r of rows) {
    const seen = latest.get(r.zoid)
    if (seen === undefined || seen.tid < r.tid) latest.set(r.zoid, r)
  }
  const current = [...latest.values()].sort((a, b) => (a.zoid < b.zoid ? -1 : a.zoid > b.zoid ? 1 : 0))
  const unnest = (list: ReadonlyArray<BatchRow>) =>
    `SELECT u.zoid, u.tid, u.class_mod, u.class_name, u.state::jsonb AS state, u.state_size, u.refs::bigint[] AS refs
      FROM unnest(${arg(typed(list.map((r) => r.zoid), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(list.map((r) => r.tid), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(list.map((r) => r.classMod), PgTypes.OID.text))}::text[],
        ${arg(typed(list.map((r) => r.className), PgTypes.OID.text))}::text[],
        ${arg(typed(list.map((r) => r.state), PgTypes.OID.text))}::text[],
        ${arg(typed(list.map((r) => r.stateSize), PgTypes.OID.int4))}::int4[],
        ${arg(typed(list.map((r) => r.refs), PgTypes.OID.text))}::text[])
        AS u(zoid, tid, class_mod, class_name, state, state_size, refs)`
  const ctes: Array<string> = [`c AS MATERIALIZED (${unnest(current)})`]
  if (options.historyPreserving) {
    ctes.push(`a AS MATERIALIZED (${unnest(rows)})`)
    ctes.push(`h AS (
      INSERT INTO object_history (${objectColumns})
      SELECT zoid, tid, class_mod, class_name, state, state_size, refs FROM a ORDER BY zoid, tid
      ON CONFLICT (zoid, tid) DO NOTHING)`)
    ctes.push(`p AS (
      INSERT INTO object_history (${objectColumns})
      SELECT o.zoid, o.tid, o.class_mod, o.class_name, o.state, o.state_size, o.refs
      FROM object_state o JOIN c ON o.zoid = c.zoid WHERE o.tid < c.tid
      ON CONFLICT (zoid, tid) DO NOTHING)`)
  }
  ctes.push(`s AS (
    INSERT INTO object_state (${objectColumns})
    SELECT zoid, tid, class_mod, class_name, state, state_size, refs FROM c ORDER BY zoid
    ON CONFLICT (zoid) DO UPDATE SET tid = EXCLUDED.tid, class_mod = EXCLUDED.class_mod,
      class_name = EXCLUDED.class_name, state = EXCLUDED.state, state_size = EXCLUDED.state_size,
      refs = EXCLUDED.refs
    WHERE object_state.tid < EXCLUDED.tid)`)
  const blobs = rows.flatMap((r) => (r.blob === undefined ? [] : [{ zoid: r.zoid, tid: r.tid, ...r.blob }]))
  if (blobs.length > 0) {
    ctes.push(`b AS (
      INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key)
      SELECT b.zoid, b.tid, b.blob_size, b.data, b.s3_key
      FROM unnest(${arg(typed(blobs.map((b) => b.zoid), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(blobs.map((b) => b.tid), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(blobs.map((b) => b.size), PgTypes.OID.int8))}::bigint[],
        ${arg(typed(blobs.map((b) => b.data), PgTypes.OID.bytea))}::bytea[],
        ${arg(typed(blobs.map((b) => b.s3Key), PgTypes.OID.text))}::text[]) AS b(zoid, tid, blob_size, data, s3_key)
      ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = EXCLUDED.data,
        s3_key = EXCLUDED.s3_key)`)
  }
  return { text: `WITH ${ctes.join(",\n")}\nSELECT 1 AS inserted`, params }
}

/** The batch was not fresh: one of its transactions was committed already (a replay); commit one by one. */
class NotFresh {
  readonly _tag = "NotFresh"
}

// ---- the service ------------------------------------------------------------------------------------------

export interface PgJsonbWriterShape {
  readonly historyPreserving: boolean
  /** the destination as found (or created) when the writer was built */
  readonly schema: PgJsonbSchema.Ensured
  /** Commits one source transaction in one PostgreSQL transaction; a replay of a committed one writes nothing. */
  readonly commit: (tx: PgJsonbTransaction) => Effect.Effect<CommitResult, InvalidTransaction | DatabaseError>
  /**
   * Background blobs, first half: `commit`, and a pending mark in the same PostgreSQL transaction (its
   * S3 blobs are not uploaded yet): until `seal`, `hasTransaction` says no, so a resumed copy does it again.
   */
  readonly commitPending: (tx: PgJsonbTransaction) => Effect.Effect<CommitResult, InvalidTransaction | DatabaseError>
  /**
   * Background blobs, second half, once every S3 upload of the transaction is confirmed: its S3
   * blob_state rows, and the pending mark cleared, in one statement; from now on it is done.
   */
  readonly seal: (
    tx: Pick<PgJsonbTransaction, "tid" | "user" | "description" | "extension">,
    blobs: ReadonlyArray<{ readonly zoid: bigint; readonly size: number; readonly s3Key: string }>
  ) => Effect.Effect<void, InvalidTransaction | DatabaseError>
  /**
   * Commits several source transactions in one PostgreSQL transaction (fewer round trips when they
   * are small), all or none; an invalid one is refused before anything is written, and a batch holding
   * one committed already falls back to `commit` for each.
   */
  readonly commitMany: (txs: ReadonlyArray<PgJsonbTransaction>) => Effect.Effect<ReadonlyArray<CommitResult>, InvalidTransaction | DatabaseError>
  /** The tids in [fromTid, toTid] that transaction_log has, ascending (ask in windows: all of them come back). */
  readonly committedTids: (fromTid: bigint, toTid: bigint) => Effect.Effect<ReadonlyArray<bigint>, DatabaseError>
  readonly hasTransaction: (tid: bigint) => Effect.Effect<boolean, DatabaseError>
  /** MAX(tid) of transaction_log */
  readonly lastTid: Effect.Effect<bigint | undefined, DatabaseError>
  /** The resume point recorded by `setWatermark`, if any (none after `finalize`). */
  readonly readWatermark: Effect.Effect<bigint | undefined, DatabaseError>
  /** Records that every source transaction up to `tid` is committed (only moves forward). */
  readonly setWatermark: (tid: bigint) => Effect.Effect<void, DatabaseError>
  /** The post-copy step (PgJsonbSchema.finalize): sequence, tombstones, history compaction, watermark dropped. */
  readonly finalize: (options?: { readonly sinceTid?: bigint | undefined }) => Effect.Effect<PgJsonbSchema.Finalized, DatabaseError>
}

/** A commit's failure that a retry may fix (a lost connection, a deadlock): commits are idempotent. */
export const isRetryable = (error: InvalidTransaction | DatabaseError): boolean =>
  error._tag === "DatabaseError" && SqlError.isSqlError(error.cause) && isRetryableSql(error.cause)

const hexTid = (tid: bigint) => `0x${hex16(tid)}`

export const make = (
  options: WriterOptions
): Effect.Effect<
  PgJsonbWriterShape,
  DestinationNotPgJsonb | DestinationSchemaMismatch | TableBusy | DatabaseError,
  SqlClient.SqlClient
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const hp = options.historyPreserving
    const invalidText = options.invalidText ?? "fail"
    const maxBytes = options.maxStatementBytes ?? 32 * 1024 * 1024
    const maxRows = options.maxStatementRows ?? 20_000
    // the setup is idempotent: a connection lost in the middle of it is tried again on a new one
    const setupRetry = {
      schedule: backoff(defaultPolicy(7)),
      while: <E extends { readonly _tag: string }>(e: E) => e._tag === "DatabaseError" && isRetryable(e as unknown as DatabaseError)
    }
    const schema = yield* PgJsonbSchema.ensure(sql, { historyPreserving: hp }).pipe(Effect.retry(setupRetry))
    const db = (operation: string) => (cause: SqlError.SqlError) => new DatabaseError({ operation, cause })

    yield* transaction(sql, Effect.andThen(
      sql.unsafe(`SELECT pg_advisory_xact_lock(hashtext('zodb-convert'), hashtext('pgjsonb-schema'))`),
      sql.unsafe(`CREATE TABLE IF NOT EXISTS ${PgJsonbSchema.watermarkTable} (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        tid bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())`).pipe(
        Effect.andThen(sql.unsafe(`CREATE TABLE IF NOT EXISTS ${PgJsonbSchema.pendingTable} (tid bigint PRIMARY KEY)`))
      )
    )).pipe(Effect.mapError(db(`create ${PgJsonbSchema.watermarkTable}`)), Effect.retry(setupRetry))

    const run = (s: { readonly text: string; readonly params: ReadonlyArray<unknown> }) =>
      sql.unsafe<{ inserted: number }>(s.text, s.params)

    const commit = Effect.fn("PgJsonbWriter.commit")(function*(tx: PgJsonbTransaction) {
      const p = prepare(tx, invalidText)
      if (p instanceof InvalidTransaction) return yield* p
      const objects = p.rows.filter((r) => r.state !== null).length
      const counts = { tid: p.tid, objects, deletions: p.rows.length - objects, blobs: p.rows.filter((r) => r.blob !== undefined).length }
      const pieces = chunks(p.rows, maxBytes, maxRows)
      if (pieces.length <= 1) {
        const [r] = yield* run(statement(p, pieces[0] ?? [], { log: true, guard: true, historyPreserving: hp })).pipe(
          Effect.mapError(db(`commit transaction ${hexTid(p.tid)}`))
        )
        return { ...counts, alreadyCommitted: (r?.inserted ?? 0) === 0, statements: 1 }
      }
      return yield* transaction(sql, Effect.gen(function*() {
        const [first] = yield* run(statement(p, [], { log: true, guard: false, historyPreserving: hp }))
        // already there: it was committed whole (ON CONFLICT waited for a twin's commit, if any)
        if ((first?.inserted ?? 0) === 0) return { ...counts, alreadyCommitted: true, statements: 1 }
        for (const piece of pieces) yield* run(statement(p, piece, { log: false, guard: false, historyPreserving: hp }))
        return { ...counts, alreadyCommitted: false, statements: 1 + pieces.length }
      })).pipe(Effect.mapError(db(`commit transaction ${hexTid(p.tid)}`)))
    })

    const commitMany = Effect.fn("PgJsonbWriter.commitMany")(function*(txs: ReadonlyArray<PgJsonbTransaction>) {
      if (txs.length === 1) return [yield* commit(txs[0]!)]
      const prepared: Array<Prepared> = []
      for (const tx of txs) {
        const p = prepare(tx, invalidText)
        if (p instanceof InvalidTransaction) return yield* p
        prepared.push(p)
      }
      const rows: Array<BatchRow> = prepared.flatMap((p) => p.rows.map((r) => ({ ...r, tid: p.tid })))
      const bytes = rows.reduce((n, r) => n + r.bytes, 0)
      // too big for one statement: each on its own (commit splits a large one itself)
      if (bytes > maxBytes || rows.length > maxRows) return yield* Effect.forEach(txs, commit)
      const attempt = transaction(sql, Effect.gen(function*() {
        const [logged] = yield* sql.unsafe<{ n: number }>(
          `WITH t AS (
             INSERT INTO transaction_log (tid, username, description, extension)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[])
             ON CONFLICT (tid) DO NOTHING RETURNING tid)
           SELECT count(*)::int AS n FROM t`,
          [
            typed(prepared.map((p) => p.tid), PgTypes.OID.int8),
            typed(prepared.map((p) => p.user), PgTypes.OID.text),
            typed(prepared.map((p) => p.description), PgTypes.OID.text),
            typed(prepared.map((p) => p.extension), PgTypes.OID.bytea)
          ]
        )
        if ((logged?.n ?? 0) !== prepared.length) return yield* Effect.fail(new NotFresh())
        if (rows.length > 0) yield* run(batchStatement(rows, { historyPreserving: hp }))
        return prepared.map((p): CommitResult => {
          const objects = p.rows.filter((r) => r.state !== null).length
          return {
            tid: p.tid,
            alreadyCommitted: false,
            objects,
            deletions: p.rows.length - objects,
            blobs: p.rows.filter((r) => r.blob !== undefined).length,
            statements: 2
          }
        })
      }))
      return yield* attempt.pipe(
        Effect.catchIf((e): e is NotFresh => e instanceof NotFresh, () => Effect.forEach(txs, commit)),
        Effect.mapError((e) => (e instanceof InvalidTransaction || e instanceof DatabaseError ? e : db(`commit transactions ${hexTid(prepared[0]!.tid)}..${hexTid(prepared[prepared.length - 1]!.tid)}`)(e as SqlError.SqlError)))
      )
    })

    // background blobs: the rows and a pending mark commit together; the seal clears the mark
    const commitPending = Effect.fn("PgJsonbWriter.commitPending")(function*(tx: PgJsonbTransaction) {
      return yield* transaction(sql, Effect.gen(function*() {
        const result = yield* commit(tx)
        yield* sql.unsafe(`INSERT INTO ${PgJsonbSchema.pendingTable} (tid) VALUES ($1) ON CONFLICT DO NOTHING`, [PgTypes.int8(BigInt.asIntN(64, tx.tid))])
          .pipe(Effect.mapError(db(`mark transaction ${hexTid(tx.tid)} pending`)))
        return result
      })).pipe(Effect.mapError((e) => (e instanceof InvalidTransaction || e instanceof DatabaseError ? e : db(`commit transaction ${hexTid(tx.tid)}`)(e as SqlError.SqlError))))
    })

    const seal = Effect.fn("PgJsonbWriter.seal")(function*(
      tx: Pick<PgJsonbTransaction, "tid" | "user" | "description" | "extension">,
      blobs: ReadonlyArray<{ readonly zoid: bigint; readonly size: number; readonly s3Key: string }>
    ) {
      const p = prepare({ ...tx, records: blobs.map((b) => ({ zoid: b.zoid, classMod: "ZODB.blob", className: "Blob", stateJson: "null", stateSize: 0, refs: [], blob: { size: b.size, s3Key: b.s3Key } })) }, invalidText)
      if (p instanceof InvalidTransaction) return yield* p
      const rows = p.rows.flatMap((r) => (r.blob === undefined ? [] : [{ zoid: r.zoid, ...r.blob }]))
      yield* sql.unsafe(
        `WITH b AS (
           INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key)
           SELECT b.zoid, $1, b.blob_size, NULL, b.s3_key
           FROM unnest($2::bigint[], $3::bigint[], $4::text[]) AS b(zoid, blob_size, s3_key)
           ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = NULL, s3_key = EXCLUDED.s3_key)
         DELETE FROM ${PgJsonbSchema.pendingTable} WHERE tid = $1`,
        [
          PgTypes.int8(p.tid),
          typed(rows.map((r) => r.zoid), PgTypes.OID.int8),
          typed(rows.map((r) => r.size), PgTypes.OID.int8),
          typed(rows.map((r) => r.s3Key), PgTypes.OID.text)
        ]
      ).pipe(Effect.mapError(db(`seal transaction ${hexTid(p.tid)}`)))
    })

    const committedTids = Effect.fn("PgJsonbWriter.committedTids")(function*(fromTid: bigint, toTid: bigint) {
      const rows = yield* sql.unsafe<{ tid: bigint }>(
        `SELECT tid FROM transaction_log WHERE tid >= $1 AND tid <= $2 ORDER BY tid`,
        [PgTypes.int8(BigInt.asIntN(64, fromTid)), PgTypes.int8(BigInt.asIntN(64, toTid))]
      ).pipe(Effect.mapError(db("read committed tids")))
      return rows.map((r) => BigInt(r.tid))
    })

    const hasTransaction = Effect.fn("PgJsonbWriter.hasTransaction")(function*(tid: bigint) {
      // a transaction still waiting for its background uploads is not done
      const rows = yield* sql.unsafe(
        `SELECT 1 FROM transaction_log t WHERE t.tid = $1
           AND (to_regclass('${PgJsonbSchema.pendingTable}') IS NULL OR NOT EXISTS (SELECT 1 FROM ${PgJsonbSchema.pendingTable} p WHERE p.tid = t.tid))`,
        [PgTypes.int8(BigInt.asIntN(64, tid))]
      ).pipe(
        Effect.mapError(db(`look up transaction ${hexTid(tid)}`))
      )
      return rows.length > 0
    })

    const lastTid = sql.unsafe<{ m: bigint | null }>(`SELECT max(tid) AS m FROM transaction_log`).pipe(
      Effect.map(([r]) => (r?.m === null || r?.m === undefined ? undefined : BigInt(r.m))),
      Effect.mapError(db("read the last tid")),
      Effect.withSpan("PgJsonbWriter.lastTid")
    )

    const readWatermark = Effect.gen(function*() {
      const [present] = yield* sql.unsafe<{ ok: boolean }>(
        `SELECT to_regclass('${PgJsonbSchema.watermarkTable}') IS NOT NULL AS ok`
      )
      if (present?.ok !== true) return undefined
      const [r] = yield* sql.unsafe<{ tid: bigint }>(`SELECT tid FROM ${PgJsonbSchema.watermarkTable}`)
      return r === undefined ? undefined : BigInt(r.tid)
    }).pipe(Effect.mapError(db("read the watermark")), Effect.withSpan("PgJsonbWriter.readWatermark"))

    const setWatermark = Effect.fn("PgJsonbWriter.setWatermark")(function*(tid: bigint) {
      yield* sql.unsafe(
        `INSERT INTO ${PgJsonbSchema.watermarkTable} AS w (id, tid) VALUES (true, $1)
         ON CONFLICT (id) DO UPDATE SET tid = greatest(w.tid, EXCLUDED.tid), updated_at = now()`,
        [PgTypes.int8(BigInt.asIntN(64, tid))]
      ).pipe(Effect.mapError(db("record the watermark")))
    })

    const finalize = Effect.fn("PgJsonbWriter.finalize")(function*(o?: { readonly sinceTid?: bigint | undefined }) {
      return yield* PgJsonbSchema.finalize(sql, { historyPreserving: hp, sinceTid: o?.sinceTid })
    })

    return { historyPreserving: hp, schema, commit, commitPending, seal, commitMany, committedTids, hasTransaction, lastTid, readWatermark, setWatermark, finalize }
  })

export class PgJsonbWriter extends Context.Service<PgJsonbWriter, PgJsonbWriterShape>()("zodb-convert/destination/PgJsonbWriter") {
  /** Ensures the destination's schema (PgJsonbSchema.ensure) and its watermark table, then writes. */
  static readonly layer = (
    options: WriterOptions
  ): Layer.Layer<PgJsonbWriter, DestinationNotPgJsonb | DestinationSchemaMismatch | TableBusy | DatabaseError, SqlClient.SqlClient> =>
    Layer.effect(PgJsonbWriter, Effect.map(make(options), (shape) => PgJsonbWriter.of(shape)))
}
