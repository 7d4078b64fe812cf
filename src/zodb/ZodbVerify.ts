/**
 * `zodb-convert --verify`: the destination re-derived from the source and compared, read-only.
 *
 * Two passes over the source, in TID order, and the destination read in pages of the same order:
 *
 * 1. **Index.** Every transaction is compared with its `transaction_log` row (user, description, the
 *    extension's bytes as zodb-convert writes them), page by page over tid ranges, so a row the source
 *    does not have is found as well. Every blob record is read from the source (size, SHA-256) and
 *    compared with its `blob_state` row: inline `data` hashed by PostgreSQL (`sha256(data)`), an S3
 *    row by a HEAD at the s3-prefix + `s3_key` (size, `sha256` metadata), with `deep` by reading the
 *    object. Records are not decoded here beyond their class pickle (a blob or not); what is kept is
 *    one entry per oid: the tid of its last revision and whether that revision deleted it (about 50
 *    bytes an object: sharded Maps of number keys over typed arrays).
 * 2. **States.** The source is read again and every record decoded as the copy decodes it (same codec
 *    form): the current revision of each live oid is an `object_state` row, history-preserving the
 *    earlier ones (and every deletion, as zodb-pgjsonb's tombstone `(zoid, tid, '', '', NULL, 0, '{}')`)
 *    `object_history` rows. Expected rows go to PostgreSQL in pages of about 500 (one statement per
 *    page and table: `unnest` of the expected rows FULL JOIN the destination's rows of the same
 *    (tid, zoid) range), and PostgreSQL compares: class, state_size, refs, and the state by jsonb
 *    equality (`state = $::jsonb`). Missing rows, extra rows, other tids and other contents come back,
 *    nothing else. With `sample` only N random live oids have their state compared (and object_history
 *    is compared by keys only); every row's key is still compared, and every count.
 *
 * The destination is never written: its pool runs with `default_transaction_read_only` (ZodbConnections
 * .verifyLayers), no schema is created or repaired, and a copy that was not finalized (its watermark
 * table, deletion tombstones in object_state) is reported as a difference.
 */
import { PgTypes } from "@effect/sql-pg"
import { Cause, Clock, Data, Effect, Fiber, Option, Queue, Runtime, Stream } from "effect"
import { SqlClient, SqlError } from "effect/sql"
import { createHash } from "node:crypto"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import { DatabaseError, type StoreError, withFix } from "../domain/Errors.ts"
import { isRetryableSql } from "../postgres/Statement.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { classInfo } from "./codec/ClassInfo.ts"
import { extensionBytes } from "./codec/Extension.ts"
import { PickleReader } from "./codec/Pickle.ts"
import { type CodecMode, decodeRecord } from "./codec/RecordCodec.ts"
import { type DestinationNotPgJsonb, DestinationSchemaMismatch } from "./destination/Errors.ts"
import { hasNulEscape } from "./destination/PgJsonbWriter.ts"
import * as PgJsonbSchema from "./destination/PgJsonbSchema.ts"
import { hex, type SourceError, type SourceRecord, type SourceTransaction, ZodbSource } from "./sources/ZodbSource.ts"

// ---- the report ------------------------------------------------------------------------------------------

export type VerifyTable = "transaction_log" | "object_state" | "object_history" | "blob_state" | "zodb_convert_watermark"

/** One difference between the source (re-derived) and the destination. Oids and tids as 16 hex digits. */
export interface Difference {
  readonly table: VerifyTable
  readonly zoid?: string | undefined
  readonly tid?: string | undefined
  readonly problem: string
  readonly expected?: unknown
  readonly found?: unknown
}

export interface TableCount {
  readonly source: number
  readonly destination: number
}

export interface VerifyReport {
  /** every object_state row's content was compared (false with a sample smaller than the objects) */
  readonly complete: boolean
  /** the sample, when one was asked for: its size, the seed that picks it (give it again to rerun), of how many */
  readonly sample: { readonly size: number; readonly seed: number; readonly of: number } | null
  readonly deep: boolean
  readonly mode: CodecMode
  readonly historyPreserving: boolean
  readonly source: string
  readonly destination: string
  readonly counts: Readonly<Record<string, TableCount>>
  /** sorted by table, tid, zoid; at most `maxDifferences` (then `differencesTruncated`) */
  readonly differences: ReadonlyArray<Difference>
  readonly differencesTruncated: boolean
  /** rows compared (transactions, objects, history revisions, blobs, and destination rows the source lacks) */
  readonly checked: number
  readonly good: number
  /** rows with at least one difference */
  readonly bad: number
  /** source records read (one pass) */
  readonly records: number
  readonly seconds: number
}

/** No difference at all: every count equal and no row different. */
export const isClean = (report: VerifyReport): boolean =>
  report.differences.length === 0 && report.bad === 0 &&
  Object.values(report.counts).every((c) => c.source === c.destination)

export interface VerifyProgress {
  readonly phase: "index" | "states" | "extras"
  /**
   * the source's transactions, which each of the two passes reads: counted in the background during
   * the first pass (undefined until known), exact from the second on
   */
  readonly sourceTransactions: number | undefined
  /** transactions read by this phase's pass */
  readonly transactions: number
  readonly records: number
  readonly blobs: number
  readonly differences: number
}

export interface VerifyOptions {
  /** the mode the config names; a destination of the other mode is a setup error (default: the destination's) */
  readonly historyPreserving?: boolean | undefined
  /** zodb-pgjsonb's s3-prefix: objects are at `<prefix>/<s3_key>` */
  readonly s3Prefix?: string | undefined
  /** compare the state of only this many random live objects (every key and count still) */
  readonly sample?: number | undefined
  /** the sample's seed (default random; the report states it) */
  readonly seed?: number | undefined
  /** read every S3 blob and hash it, instead of trusting its size and sha256 metadata */
  readonly deep?: boolean | undefined
  /** the codec form the copy was made with (default "faithful") */
  readonly mode?: CodecMode | undefined
  /** statements (and blob checks) in flight at once (default 4) */
  readonly concurrency?: number | undefined
  readonly retry: RetryPolicy
  /** differences kept for the report (default 10,000); all are counted */
  readonly maxDifferences?: number | undefined
  readonly onProgress?: ((progress: VerifyProgress) => Effect.Effect<void>) | undefined
}

/** The destination holds no zodb-pgjsonb schema at all: nothing to verify (exit 2). */
export class NothingToVerify extends Data.TaggedError("NothingToVerify")<{
  readonly where: string
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    return "check the dsn of <pgjsonb destination>: it must name the database zodb-convert copied into (run zodb-convert first)"
  }
  override get message() {
    return withFix(`destination ${this.where} holds no zodb-pgjsonb schema (no transaction_log): nothing to verify`, this.fix)
  }
}

/** Verification found differences (exit 1); they are in the report. */
export class VerifyFailed extends Data.TaggedError("VerifyFailed")<{
  readonly bad: number
  readonly counts: ReadonlyArray<string>
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `verification failed: ${this.bad} row(s) differ from the source` +
      `${this.counts.length === 0 ? "" : `; counts differ: ${this.counts.join(", ")}`}`
  }
}

export type VerifyError = SourceError | DatabaseError | StoreError | NothingToVerify | DestinationNotPgJsonb | DestinationSchemaMismatch

// ---- the index: one entry per oid ----------------------------------------------------------------------

const LIVE = 1
const SAMPLED = 2

/**
 * oid -> (tid of its last revision, live): sharded Maps (V8's Map holds at most 2^24 entries) from the
 * oid as a number (oids are below 2^53 in practice; others go to a Map of bigints) to a slot of typed
 * arrays.
 */
class ZoidIndex {
  private readonly shards: Array<Map<number, number>> = Array.from({ length: 16 }, () => new Map<number, number>())
  private readonly big = new Map<bigint, number>()
  zoids = new BigInt64Array(1024)
  tids = new BigInt64Array(1024)
  flags = new Uint8Array(1024)
  size = 0

  slot(zoid: bigint): number | undefined {
    if (zoid > -9007199254740991n && zoid < 9007199254740991n) {
      const n = Number(zoid)
      return this.shards[n & 15]!.get(n)
    }
    return this.big.get(zoid)
  }

  set(zoid: bigint, tid: bigint, live: boolean): void {
    let s = this.slot(zoid)
    if (s === undefined) {
      s = this.size++
      if (s >= this.tids.length) this.grow()
      this.zoids[s] = zoid
      if (zoid > -9007199254740991n && zoid < 9007199254740991n) {
        const n = Number(zoid)
        this.shards[n & 15]!.set(n, s)
      } else this.big.set(zoid, s)
    }
    this.tids[s] = tid
    this.flags[s] = (this.flags[s]! & ~LIVE) | (live ? LIVE : 0)
  }

  private grow() {
    const n = this.tids.length * 2
    const z = new BigInt64Array(n)
    z.set(this.zoids)
    this.zoids = z
    const t = new BigInt64Array(n)
    t.set(this.tids)
    this.tids = t
    const f = new Uint8Array(n)
    f.set(this.flags)
    this.flags = f
  }
}

/** mulberry32: a small seeded PRNG, so that a sample can be drawn again from its seed. */
const prng = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// ---- helpers ---------------------------------------------------------------------------------------------

const i64 = (n: bigint) => BigInt.asIntN(64, n)

const typed = (values: ReadonlyArray<unknown>, oid: number): PgTypes.Parameter => {
  const p = PgTypes.array(values, oid)
  if (p._tag === "Failure") throw p.failure
  return p.success
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

const fullKey = (prefix: string | undefined, key: string) =>
  prefix === undefined || prefix === "" ? key : `${prefix.replace(/\/+$/, "")}/${key}`

const isBlobClass = (mod: string, name: string) => mod === "ZODB.blob" && name === "Blob"

/** The class of a record from its class pickle alone; undefined when it cannot be read (pass 2 says why). */
const classOf = (data: Uint8Array, mode: CodecMode): { readonly module: string; readonly name: string } | undefined => {
  try {
    const reader = new PickleReader(data)
    return classInfo(reader.next(), mode, 0)
  } catch {
    return undefined
  }
}

const short = (s: string | null | undefined, n = 300) =>
  s === null || s === undefined ? s ?? null : s.length > n ? `${s.slice(0, n)}…` : s

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(a, b) === 0

/** A position in (tid, zoid) order, signed as PostgreSQL stores both. */
interface Key {
  readonly tid: bigint
  readonly zoid: bigint
}

/** `(tid, zoid)` in (lo, hi]; no bound where undefined. `first` is the number of the first parameter. */
const keyRange = (lo: Key | undefined, hi: Key | undefined, first: number) => {
  const params: Array<unknown> = []
  const parts: Array<string> = []
  const arg = (v: bigint) => {
    params.push(PgTypes.int8(v))
    return `$${first + params.length - 1}`
  }
  if (lo !== undefined) {
    const t = arg(lo.tid)
    const z = arg(lo.zoid)
    parts.push(`tid >= ${t} AND (tid, zoid) > (${t}, ${z})`)
  }
  if (hi !== undefined) {
    const t = arg(hi.tid)
    const z = arg(hi.zoid)
    parts.push(`tid <= ${t} AND (tid, zoid) <= (${t}, ${z})`)
  }
  return { where: parts.length === 0 ? "true" : parts.join(" AND "), params }
}

/** A bounded queue between one producer and `n` workers; fails fast. */
const workPool = <P, E1, R1, E2, R2>(
  n: number,
  produce: (emit: (page: P) => Effect.Effect<void>) => Effect.Effect<void, E1, R1>,
  work: (page: P) => Effect.Effect<void, E2, R2>
) =>
  Effect.gen(function*() {
    const q = yield* Queue.bounded<P, Cause.Done>(n)
    const producer = produce((p) => Queue.offer(q, p).pipe(Effect.asVoid)).pipe(Effect.ensuring(Queue.end(q)))
    const worker = Effect.forever(Effect.flatMap(Queue.take(q), work)).pipe(
      Effect.catchIf((e): e is Cause.Done => Cause.isDone(e), () => Effect.void)
    ) as Effect.Effect<void, E2, R2>
    yield* Effect.all([producer, ...Array.from({ length: n }, () => worker)], { concurrency: "unbounded", discard: true })
  })

// ---- the run ---------------------------------------------------------------------------------------------

interface ExpectedRow {
  readonly zoid: bigint
  readonly tid: bigint
  /** compare the content (false: the key only) */
  readonly check: boolean
  readonly classMod: string
  readonly className: string
  readonly state: string | null
  readonly stateSize: number
  readonly refs: string
}

interface StatesPage {
  readonly lo: Key | undefined
  readonly hi: Key | undefined
  readonly state: ReadonlyArray<ExpectedRow>
  readonly history: ReadonlyArray<ExpectedRow>
}

interface TxPage {
  readonly lo: bigint | undefined
  readonly hi: bigint | undefined
  readonly txs: ReadonlyArray<SourceTransaction>
}

interface BlobItem {
  readonly record: SourceRecord
  readonly tid: bigint
}

type IndexPage = { readonly _tag: "tx"; readonly page: TxPage } | { readonly _tag: "blobs"; readonly items: ReadonlyArray<BlobItem> }

export const run = (
  options: VerifyOptions
): Effect.Effect<VerifyReport, VerifyError, ZodbSource | SqlClient.SqlClient | Stats> =>
  Effect.gen(function*() {
    const source = yield* ZodbSource
    const sql = yield* SqlClient.SqlClient
    const store = yield* Effect.serviceOption(ObjectStore)
    const mode = options.mode ?? "faithful"
    const concurrency = Math.max(1, options.concurrency ?? 4)
    const maxDifferences = options.maxDifferences ?? 10_000
    const deep = options.deep === true
    const startedAt = yield* Clock.currentTimeMillis

    const db = (what: string) => (cause: SqlError.SqlError) => new DatabaseError({ operation: what, cause })
    const query = <A extends object>(what: string, text: string, params: ReadonlyArray<unknown> = []) =>
      retrying(sql.unsafe<A>(text, params as Array<never>).pipe(Effect.mapError(db(what))), {
        policy: options.retry,
        isRetryable: (e: DatabaseError) => SqlError.isSqlError(e.cause) && isRetryableSql(e.cause),
        what
      })

    // ---- what the destination is ------------------------------------------------------------------------
    const inspection = yield* PgJsonbSchema.inspect(sql)
    if (inspection._tag === "Empty") return yield* new NothingToVerify({ where: inspection.where })
    const hp = options.historyPreserving ?? inspection.historyPreserving
    if (hp !== inspection.historyPreserving) {
      return yield* new DestinationSchemaMismatch({
        where: inspection.where,
        historyPreserving: hp,
        otherMode: true,
        differences: [
          inspection.historyPreserving
            ? "the destination is history-preserving (it has object_history), the config says history-free"
            : "the destination is history-free (it has no object_history), the config says history-preserving"
        ]
      })
    }

    // ---- differences ------------------------------------------------------------------------------------
    const differences: Array<Difference> = []
    let bad = 0
    let checked = 0
    let truncated = false
    const differ = (d: Difference, counted = true) => {
      if (counted) bad++
      if (differences.length < maxDifferences) differences.push(d)
      else truncated = true
    }
    const progress = { transactions: 0, records: 0, blobs: 0 }
    let sourceCount: number | undefined
    const report = (phase: VerifyProgress["phase"]) =>
      options.onProgress === undefined
        ? Effect.void
        : Effect.suspend(() => options.onProgress!({ phase, sourceTransactions: sourceCount, ...progress, differences: bad }))
    // the first pass's total, counted without decoding beside it (as the copy does); not needed after it
    const counting = options.onProgress === undefined ? undefined : yield* Effect.forkChild(
      source.count.pipe(
        Effect.tap((c) =>
          Effect.sync(() => {
            sourceCount ??= c.transactions
          })
        ),
        Effect.ignore
      )
    )

    if (inspection.copyInProgress) {
      differ({
        table: "zodb_convert_watermark",
        problem: "copy not finalized: the copy's watermark table is there (finish it with zodb-convert --incremental)"
      }, false)
    }

    // ---- pass 1: transactions, blobs, the index -----------------------------------------------------------
    const index = new ZoidIndex()
    const blobKeys = new Set<string>()
    let sourceTransactions = 0
    let historyExpected = 0
    let blobsFound = 0
    const blobKey = (zoid: bigint, tid: bigint) => `${i64(zoid)}:${i64(tid)}`

    const compareTransactions = (page: TxPage) =>
      Effect.gen(function*() {
        const params: Array<unknown> = []
        const where: Array<string> = []
        if (page.lo !== undefined) {
          params.push(PgTypes.int8(page.lo))
          where.push(`tid > $${params.length}`)
        }
        if (page.hi !== undefined) {
          params.push(PgTypes.int8(page.hi))
          where.push(`tid <= $${params.length}`)
        }
        const rows = yield* query<{ tid: bigint; username: string | null; description: string | null; extension: Uint8Array | null }>(
          "compare transaction_log",
          `SELECT tid, username, description, extension FROM transaction_log
           WHERE ${where.length === 0 ? "true" : where.join(" AND ")} ORDER BY tid`,
          params
        )
        const found = new Map(rows.map((r) => [BigInt(r.tid), r]))
        for (const tx of page.txs) {
          const tid = i64(tx.tid)
          const row = found.get(tid)
          found.delete(tid)
          checked++
          const at = { table: "transaction_log" as const, tid: hex(tx.tid) }
          let user: string
          let description: string
          let extension: Uint8Array
          try {
            user = strictUtf8.decode(tx.user)
            description = strictUtf8.decode(tx.description)
            if (user.includes("\u0000") || description.includes("\u0000")) throw new Error("NUL")
          } catch {
            differ({ ...at, problem: "the source's user or description is not UTF-8 text without NUL: zodb-convert cannot copy this transaction" })
            continue
          }
          try {
            extension = extensionBytes(tx.extension)
          } catch (e) {
            differ({ ...at, problem: `the source's extension cannot be decoded (${String(e)}): zodb-convert cannot copy this transaction` })
            continue
          }
          if (row === undefined) {
            differ({ ...at, problem: "missing: the source has this transaction, transaction_log has no row" })
            continue
          }
          const problems: Array<string> = []
          const exp: Record<string, string> = {}
          const got: Record<string, string | null> = {}
          if (row.username !== user) {
            problems.push("username differs")
            exp.username = user
            got.username = row.username
          }
          if (row.description !== description) {
            problems.push("description differs")
            exp.description = description
            got.description = row.description
          }
          const ext = row.extension ?? new Uint8Array(0)
          if (!sameBytes(ext, extension)) {
            problems.push("extension differs")
            exp.extension = Buffer.from(extension).toString("utf8")
            got.extension = Buffer.from(ext).toString("utf8")
          }
          if (problems.length > 0) differ({ ...at, problem: problems.join("; "), expected: exp, found: got })
        }
        for (const [tid] of found) {
          checked++
          differ({ table: "transaction_log", tid: hex(tid), problem: "extra: transaction_log has this transaction, the source has none" })
        }
      })

    const s3Check = (zoid: bigint, tid: bigint, s3Key: string, size: number, sha256: string) =>
      Effect.gen(function*() {
        const at = { table: "blob_state" as const, zoid: hex(zoid), tid: hex(tid) }
        if (store._tag === "None") {
          return [{ ...at, problem: `s3_key ${s3Key}, but the destination's config has no S3 to check it in` }]
        }
        const key = fullKey(options.s3Prefix, s3Key)
        if (deep) {
          const hash = createHash("sha256")
          const length = yield* store.value.get(key, (chunk) => Effect.sync(() => void hash.update(chunk)))
          if (Option.isNone(length)) return [{ ...at, problem: `the S3 object ${key} is missing` }]
          const digest = hash.digest("hex")
          if (length.value !== size || digest !== sha256) {
            return [{
              ...at,
              problem: `the S3 object ${key} differs from the source's blob (read whole)`,
              expected: { size, sha256 },
              found: { size: length.value, sha256: digest }
            }]
          }
          return []
        }
        const head = yield* store.value.head(key)
        if (Option.isNone(head)) return [{ ...at, problem: `the S3 object ${key} is missing` }]
        const meta = head.value.metadata["sha256"]
        if (head.value.size !== size || meta !== sha256) {
          return [{
            ...at,
            problem: `the S3 object ${key} ${head.value.size !== size ? "has another size" : meta === undefined ? "has no sha256 metadata" : "has another sha256 metadata"}`,
            expected: { size, sha256 },
            found: { size: head.value.size, sha256: meta ?? null }
          }]
        }
        return []
      })

    const compareBlobs = (items: ReadonlyArray<BlobItem>) =>
      Effect.gen(function*() {
        // the source's bytes: size and SHA-256 (a blob that cannot be read is a difference of its own)
        const sourced = yield* Effect.forEach(items, (item) =>
          Effect.scoped(source.blob(item.record, item.tid)).pipe(
            Effect.map((c) => ({ item, size: c.payload.size, sha256: c.sha256, problem: undefined as string | undefined })),
            Effect.catchTag("ZodbSourceError", (e) => Effect.succeed({ item, size: -1, sha256: "", problem: e.problem }))
          ), { concurrency: Math.min(4, concurrency) })
        const rows = yield* query<{ i: number; blob_size: bigint | null; s3_key: string | null; inline: boolean | null; sha: string | null; len: number | null }>(
          "compare blob_state",
          `SELECT e.i::int AS i, b.blob_size, b.s3_key, b.data IS NOT NULL AS inline,
                  CASE WHEN b.data IS NOT NULL THEN encode(sha256(b.data), 'hex') END AS sha, length(b.data) AS len
           FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS e(zoid, tid, i)
           LEFT JOIN blob_state b ON b.zoid = e.zoid AND b.tid = e.tid ORDER BY e.i`,
          [
            typed(items.map((b) => i64(b.record.zoid)), PgTypes.OID.int8),
            typed(items.map((b) => i64(b.tid)), PgTypes.OID.int8)
          ]
        )
        const s3: Array<Effect.Effect<ReadonlyArray<Difference>, StoreError>> = []
        for (const row of rows) {
          const s = sourced[row.i - 1]!
          const zoid = s.item.record.zoid
          const tid = s.item.tid
          checked++
          progress.blobs++
          if (row.blob_size !== null) blobsFound++
          const at = { table: "blob_state" as const, zoid: hex(zoid), tid: hex(tid) }
          if (s.problem !== undefined) {
            differ({ ...at, problem: `the source's blob cannot be read: ${s.problem}` })
            continue
          }
          if (row.blob_size === null) {
            differ({ ...at, problem: "missing: the source has this blob, blob_state has no row", expected: { size: s.size, sha256: s.sha256 } })
            continue
          }
          const size = Number(row.blob_size)
          if (size !== s.size) {
            differ({ ...at, problem: "blob_size differs from the source's blob", expected: s.size, found: size })
            continue
          }
          if (row.inline === true && row.s3_key !== null) {
            differ({ ...at, problem: "the row has both data and s3_key" })
            continue
          }
          if (row.inline === true) {
            if (row.len !== s.size || row.sha !== s.sha256) {
              differ({ ...at, problem: "the inline data differs from the source's blob", expected: { size: s.size, sha256: s.sha256 }, found: { size: row.len, sha256: row.sha } })
            }
            continue
          }
          if (row.s3_key === null) {
            differ({ ...at, problem: "the row has neither data nor s3_key" })
            continue
          }
          s3.push(s3Check(zoid, tid, row.s3_key, s.size, s.sha256))
        }
        const found = yield* Effect.all(s3, { concurrency })
        for (const list of found) for (const d of list) differ(d)
      })

    const txPageSize = 500
    const blobPageSize = 32
    yield* workPool<IndexPage, SourceError, never, DatabaseError | StoreError, Stats>(
      concurrency,
      (emit) =>
        Effect.gen(function*() {
          let txs: Array<SourceTransaction> = []
          let lo: bigint | undefined
          let blobs: Array<BlobItem> = []
          yield* source.transactions(undefined).pipe(
            Stream.runForEach((tx) =>
              Effect.gen(function*() {
                sourceTransactions++
                progress.transactions++
                // one record per oid and transaction, the last one, as the writer keeps it
                const records = new Map<bigint, SourceRecord>()
                for (const r of tx.records) records.set(r.zoid, r)
                const tid = i64(tx.tid)
                for (const r of records.values()) {
                  progress.records++
                  const zoid = i64(r.zoid)
                  index.set(zoid, tid, r.data !== null)
                  if (r.data === null) continue
                  const cls = classOf(r.data, mode)
                  if (cls !== undefined && isBlobClass(cls.module, cls.name)) {
                    blobKeys.add(blobKey(zoid, tid))
                    blobs.push({ record: r, tid: tx.tid })
                    if (blobs.length >= blobPageSize) {
                      yield* emit({ _tag: "blobs", items: blobs })
                      blobs = []
                    }
                  }
                }
                // records' bytes are not needed for transaction_log: keep the page small
                txs.push({ ...tx, records: [] })
                if (txs.length >= txPageSize) {
                  yield* emit({ _tag: "tx", page: { lo, hi: tid, txs } })
                  lo = tid
                  txs = []
                  yield* report("index")
                }
              })
            )
          )
          yield* emit({ _tag: "tx", page: { lo, hi: undefined, txs } })
          if (blobs.length > 0) yield* emit({ _tag: "blobs", items: blobs })
        }),
      (page) => (page._tag === "tx" ? compareTransactions(page.page) : compareBlobs(page.items))
    )
    if (counting !== undefined) yield* Fiber.interrupt(counting)
    sourceCount = sourceTransactions
    yield* report("index")

    // live objects, the sample
    let live = 0
    for (let s = 0; s < index.size; s++) if ((index.flags[s]! & LIVE) !== 0) live++
    const sampleSize = options.sample === undefined ? undefined : Math.max(0, Math.floor(options.sample))
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31)
    const sampling = sampleSize !== undefined && sampleSize < live
    if (sampling) {
      // reservoir sampling over the oids in the order the source first names them: the same source and
      // seed give the same sample
      const random = prng(seed)
      const chosen: Array<number> = []
      let seen = 0
      for (let s = 0; s < index.size; s++) {
        if ((index.flags[s]! & LIVE) === 0) continue
        if (chosen.length < sampleSize) chosen.push(s)
        else {
          const j = Math.floor(random() * (seen + 1))
          if (j < sampleSize) chosen[j] = s
        }
        seen++
      }
      for (const s of chosen) index.flags[s] = index.flags[s]! | SAMPLED
    }
    const shouldCheckState = (slot: number) => !sampling || (index.flags[slot]! & SAMPLED) !== 0

    // ---- pass 2: object_state (and object_history) --------------------------------------------------------
    const objectStateRows: Array<{ zoid: bigint; tid: bigint; kind: "missing" | "extra"; d: Difference }> = []
    const compareRows = (table: "object_state" | "object_history", page: StatesPage, rows: ReadonlyArray<ExpectedRow>) =>
      Effect.gen(function*() {
        const range = keyRange(page.lo, page.hi, 9)
        const found = yield* query<{
          i: number | null
          zoid: bigint
          tid: bigint
          missing: boolean
          extra: boolean
          class_mod: string | null
          class_name: string | null
          state_size: number | null
          refs: string | null
          state_same: boolean | null
          state: string | null
          expected_state: string | null
          tomb: boolean
        }>(
          `compare ${table}`,
          `WITH e AS MATERIALIZED (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[], $8::bool[])
               WITH ORDINALITY AS e(zoid, tid, class_mod, class_name, state, state_size, refs, chk, i)
           ), d AS (
             SELECT zoid, tid, class_mod, class_name, state, state_size, refs FROM ${table} WHERE ${range.where}
           ), j AS (
             SELECT e.i, coalesce(e.zoid, d.zoid) AS zoid, coalesce(e.tid, d.tid) AS tid,
                    d.zoid IS NULL AS missing, e.zoid IS NULL AS extra, e.chk,
                    d.class_mod, d.class_name, d.state_size, d.refs, d.state, d.zoid IS NOT NULL AND d.state IS NULL AS tomb,
                    e.class_mod AS e_mod, e.class_name AS e_name, e.state_size AS e_size, e.refs::bigint[] AS e_refs,
                    e.state::jsonb AS e_state
             FROM e FULL JOIN d ON d.zoid = e.zoid AND d.tid = e.tid
           )
           SELECT i::int AS i, zoid, tid, missing, extra, class_mod, class_name, state_size, refs::text AS refs, tomb,
                  (state IS NOT DISTINCT FROM e_state) AS state_same,
                  CASE WHEN NOT (state IS NOT DISTINCT FROM e_state) THEN left(state::text, 300) END AS state,
                  CASE WHEN NOT (state IS NOT DISTINCT FROM e_state) THEN left(e_state::text, 300) END AS expected_state
           FROM j
           WHERE missing OR extra OR (chk AND NOT (class_mod = e_mod AND class_name = e_name AND state_size = e_size
                 AND refs = e_refs AND state IS NOT DISTINCT FROM e_state))`,
          [
            typed(rows.map((r) => r.zoid), PgTypes.OID.int8),
            typed(rows.map((r) => r.tid), PgTypes.OID.int8),
            typed(rows.map((r) => r.classMod), PgTypes.OID.text),
            typed(rows.map((r) => r.className), PgTypes.OID.text),
            typed(rows.map((r) => r.state), PgTypes.OID.text),
            typed(rows.map((r) => r.stateSize), PgTypes.OID.int4),
            typed(rows.map((r) => r.refs), PgTypes.OID.text),
            typed(rows.map((r) => r.check), PgTypes.OID.bool),
            ...range.params
          ]
        )
        checked += rows.length
        for (const f of found) {
          const zoid = BigInt(f.zoid)
          const tid = BigInt(f.tid)
          const at = { table, zoid: hex(zoid), tid: hex(tid) }
          if (f.extra) {
            checked++
            const d: Difference = f.tomb && table === "object_state"
              ? { ...at, problem: "copy not finalized: a deletion tombstone (state NULL) in object_state" }
              : { ...at, problem: `extra: ${table} has this row, the source ${table === "object_state" ? "has no such current revision" : "has no such earlier revision"}` }
            if (table === "object_state") objectStateRows.push({ zoid, tid, kind: "extra", d })
            else differ(d)
            continue
          }
          const e = rows[(f.i ?? 1) - 1]!
          if (f.missing) {
            const d: Difference = { ...at, problem: `missing: the source's ${table === "object_state" ? "current revision" : e.state === null ? "deletion (a tombstone row)" : "earlier revision"} has no ${table} row` }
            if (table === "object_state") objectStateRows.push({ zoid, tid, kind: "missing", d })
            else differ(d)
            continue
          }
          const problems: Array<string> = []
          const expected: Record<string, unknown> = {}
          const got: Record<string, unknown> = {}
          if (f.class_mod !== e.classMod || f.class_name !== e.className) {
            problems.push("class differs")
            expected.class = `${e.classMod}.${e.className}`
            got.class = `${f.class_mod}.${f.class_name}`
          }
          if (f.state_size !== e.stateSize) {
            problems.push("state_size differs")
            expected.state_size = e.stateSize
            got.state_size = f.state_size
          }
          if (f.refs !== e.refs) {
            problems.push("refs differ")
            expected.refs = e.refs
            got.refs = f.refs
          }
          if (f.state_same !== true) {
            problems.push("state differs (jsonb)")
            expected.state = short(f.expected_state)
            got.state = short(f.state)
          }
          differ({ ...at, problem: problems.join("; "), expected, found: got })
        }
      })

    const pageRows = 500
    const pageBytes = 4 * 1024 * 1024
    yield* workPool<StatesPage, SourceError, never, DatabaseError, Stats>(
      concurrency,
      (emit) =>
        Effect.gen(function*() {
          let lo: Key | undefined
          let state: Array<ExpectedRow> = []
          let history: Array<ExpectedRow> = []
          let weight = 0
          let bytes = 0
          progress.records = 0
          progress.transactions = 0
          const expect = (
            list: Array<ExpectedRow>,
            zoid: bigint,
            tid: bigint,
            record: SourceRecord,
            check: boolean,
            table: "object_state" | "object_history"
          ) => {
            if (record.data === null) {
              list.push({ zoid, tid, check, classMod: "", className: "", state: null, stateSize: 0, refs: "{}" })
              weight += check ? 1 : 0.1
              return
            }
            if (!check) {
              list.push({ zoid, tid, check, classMod: "", className: "", state: null, stateSize: 0, refs: "{}" })
              weight += 0.1
              return
            }
            let decoded
            try {
              decoded = decodeRecord(record.data, { mode })
            } catch (error) {
              checked++
              differ({
                table,
                zoid: hex(zoid),
                tid: hex(tid),
                problem: `the source record cannot be decoded (zodb-convert leaves its transaction out): ${(error as { message?: string }).message ?? String(error)}`
              })
              return
            }
            if (hasNulEscape(decoded.stateJson)) {
              checked++
              differ({ table, zoid: hex(zoid), tid: hex(tid), problem: "the source record's JSON holds \\u0000, which jsonb refuses: zodb-convert cannot copy it" })
              return
            }
            list.push({
              zoid,
              tid,
              check,
              classMod: decoded.classMod,
              className: decoded.className,
              state: decoded.stateJson,
              stateSize: decoded.stateSize,
              refs: `{${decoded.refs.map((r) => i64(r).toString()).join(",")}}`
            })
            weight += 1
            bytes += decoded.stateJson.length + 64
          }
          yield* source.transactions(undefined).pipe(
            Stream.runForEach((tx) =>
              Effect.gen(function*() {
                progress.transactions++
                const tid = i64(tx.tid)
                const records = new Map<bigint, SourceRecord>()
                for (const r of tx.records) records.set(i64(r.zoid), r)
                const zoids = [...records.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
                for (const zoid of zoids) {
                  const record = records.get(zoid)!
                  progress.records++
                  const slot = index.slot(zoid)!
                  const current = index.tids[slot] === tid
                  const isLive = (index.flags[slot]! & LIVE) !== 0
                  if (current && isLive) expect(state, zoid, tid, record, shouldCheckState(slot), "object_state")
                  else if (hp) {
                    historyExpected++
                    expect(history, zoid, tid, record, !sampling, "object_history")
                  }
                  if (weight >= pageRows || bytes >= pageBytes) {
                    const hi = { tid, zoid }
                    yield* emit({ lo, hi, state, history })
                    lo = hi
                    state = []
                    history = []
                    weight = 0
                    bytes = 0
                    yield* report("states")
                  }
                }
              })
            )
          )
          yield* emit({ lo, hi: undefined, state, history })
        }),
      (page) =>
        Effect.andThen(
          compareRows("object_state", page, page.state),
          hp ? compareRows("object_history", page, page.history) : Effect.void
        )
    )
    yield* report("states")

    // object_state: a row at another tid than the source's current revision is one difference, not two
    const byZoid = new Map<bigint, Array<(typeof objectStateRows)[number]>>()
    for (const r of objectStateRows) {
      const list = byZoid.get(r.zoid)
      if (list === undefined) byZoid.set(r.zoid, [r])
      else list.push(r)
    }
    for (const [zoid, list] of byZoid) {
      const missing = list.find((r) => r.kind === "missing")
      const extra = list.find((r) => r.kind === "extra")
      if (missing !== undefined && extra !== undefined && list.length === 2) {
        checked--
        differ({
          table: "object_state",
          zoid: hex(zoid),
          tid: hex(missing.tid),
          problem: `the row is at tid ${hex(extra.tid)}, the source's current revision at tid ${hex(missing.tid)}` +
            (extra.d.problem.startsWith("copy not finalized") ? " (a deletion tombstone: copy not finalized)" : ""),
          expected: { tid: hex(missing.tid) },
          found: { tid: hex(extra.tid) }
        })
      } else for (const r of list) differ(r.d)
    }

    // ---- counts, and blob_state rows the source has no blob for ---------------------------------------------
    const count = (table: string) =>
      Effect.map(query<{ n: bigint }>(`count ${table}`, `SELECT count(*) AS n FROM ${table}`), ([r]) => Number(r?.n ?? 0))
    const counts: Record<string, TableCount> = {
      transaction_log: { source: sourceTransactions, destination: yield* count("transaction_log") },
      object_state: { source: live, destination: yield* count("object_state") },
      ...(hp ? { object_history: { source: historyExpected, destination: yield* count("object_history") } } : {}),
      blob_state: { source: blobKeys.size, destination: yield* count("blob_state") }
    }
    if (counts.blob_state!.destination > blobsFound) {
      yield* report("extras")
      let after: { zoid: bigint; tid: bigint } | undefined
      for (;;) {
        const page = yield* query<{ zoid: bigint; tid: bigint }>(
          "list blob_state",
          after === undefined
            ? `SELECT zoid, tid FROM blob_state ORDER BY zoid, tid LIMIT 10000`
            : `SELECT zoid, tid FROM blob_state WHERE (zoid, tid) > ($1, $2) ORDER BY zoid, tid LIMIT 10000`,
          after === undefined ? [] : [PgTypes.int8(after.zoid), PgTypes.int8(after.tid)]
        )
        for (const r of page) {
          const zoid = BigInt(r.zoid)
          const tid = BigInt(r.tid)
          if (!blobKeys.has(blobKey(zoid, tid))) {
            checked++
            differ({ table: "blob_state", zoid: hex(zoid), tid: hex(tid), problem: "extra: blob_state has this row, the source has no such blob" })
          }
        }
        if (page.length < 10000) break
        const last = page[page.length - 1]!
        after = { zoid: BigInt(last.zoid), tid: BigInt(last.tid) }
      }
    }

    const order: Record<VerifyTable, number> = { zodb_convert_watermark: 0, transaction_log: 1, object_state: 2, object_history: 3, blob_state: 4 }
    differences.sort((a, b) =>
      order[a.table] - order[b.table] || (a.tid ?? "").localeCompare(b.tid ?? "") || (a.zoid ?? "").localeCompare(b.zoid ?? "")
    )
    const seconds = ((yield* Clock.currentTimeMillis) - startedAt) / 1000
    return {
      complete: !sampling,
      sample: sampleSize === undefined ? null : { size: Math.min(sampleSize, live), seed, of: live },
      deep,
      mode,
      historyPreserving: hp,
      source: source.describe,
      destination: inspection.where,
      counts,
      differences,
      differencesTruncated: truncated,
      checked,
      good: Math.max(0, checked - bad),
      bad,
      records: progress.records,
      seconds
    }
  })

/** The report as an outcome: any difference (or count that differs) is `VerifyFailed` (exit 1). */
export const outcome = (report: VerifyReport): Effect.Effect<VerifyReport, VerifyFailed> =>
  isClean(report)
    ? Effect.succeed(report)
    : Effect.fail(new VerifyFailed({
      bad: report.bad,
      counts: Object.entries(report.counts).filter(([, c]) => c.source !== c.destination).map(([t, c]) =>
        `${t} ${c.destination} in the destination, ${c.source} from the source`
      )
    }))

