/**
 * RelStorage on PostgreSQL as a zodb-convert source, read the way RelStorage's own iterator reads it
 * (relstorage/adapters/dbiter.py):
 * - history-preserving: every row of `transaction` in TID order (packed ones included, as
 *   `iter_transactions_range` does), each with its `object_state` rows in zoid order;
 * - history-free: there is no transaction table; each distinct `object_state.tid` is a transaction
 *   with empty user, description and extension, holding the current revision of its objects.
 * RelStorage's tid-0 row ("special transaction for object creation") holds no objects and is no ZODB
 * transaction: it is not copied. Keyset pages keep every statement short and memory flat: a page of transactions, then their
 * records in pages of rows. Blobs are read through `blob_chunk`'s large objects (one per chunk).
 */
import { Effect, Layer, Option, Stream } from "effect"
import { SqlClient, type SqlError } from "effect/sql"
import { createHash } from "node:crypto"
import * as Payload from "../../core/Payload.ts"
import type { RetryPolicy } from "../../core/Retry.ts"
import { retrying } from "../../core/Retry.ts"
import type { Stats } from "../../core/Stats.ts"
import * as LargeObjects from "../../postgres/LargeObjects.ts"
import { isRetryableSql } from "../../postgres/Statement.ts"
import { SourceError, type SourceRecord, type SourceTransaction, ZodbSource } from "./ZodbSource.ts"

export interface RelStorageReaderOptions {
  /** the database as shown to users, without credentials */
  readonly describe: string
  /** `keep-history` of the source's <relstorage> section */
  readonly keepHistory: boolean
  readonly policy: RetryPolicy
  /** where blob payloads above `inMemMax` are spooled */
  readonly tempDir: string
  readonly inMemMax: number
  /** transactions per listing page */
  readonly pageSize?: number | undefined
}

const rowsPerPage = 2000

type Raw = Record<string, unknown>
const big = (v: unknown): bigint => BigInt(v as string | number | bigint)
const bytes = (v: unknown): Uint8Array => (v instanceof Uint8Array ? v : new Uint8Array(0))

export const layer = (options: RelStorageReaderOptions): Layer.Layer<ZodbSource, SourceError, SqlClient.SqlClient | Stats> =>
  Layer.effect(
    ZodbSource,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const stats = yield* Effect.context<Stats>()
      const where = options.describe
      const fail = (problem: string, extra: Partial<{ tid: bigint; zoid: bigint }> = {}) =>
        new SourceError({ source: where, problem, ...extra })
      const query = (what: string, text: string, params: ReadonlyArray<unknown>) =>
        retrying(sql.unsafe<Raw>(text, params as Array<never>), {
          policy: options.policy,
          isRetryable: isRetryableSql,
          what
        }).pipe(
          Effect.provideContext(stats),
          Effect.mapError((cause: SqlError.SqlError) => fail(`${what}: ${cause.message}`))
        )

      // what the tables say about the mode: the wrong keep-history is a setup error, named
      const tables = yield* query(
        "read the schema",
        `SELECT table_name FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name IN ('object_state', 'transaction', 'blob_chunk')`,
        []
      )
      const has = new Set(tables.map((t) => String(t.table_name)))
      if (!has.has("object_state")) {
        return yield* fail("has no object_state table: is this a RelStorage database, and the right schema?")
      }
      if (options.keepHistory && !has.has("transaction")) {
        return yield* fail("has no transaction table: it is history-free; set keep-history false in the <relstorage> section")
      }
      if (!options.keepHistory && has.has("transaction")) {
        return yield* fail("has a transaction table: it is history-preserving; set keep-history true in the <relstorage> section")
      }
      const pageSize = options.pageSize ?? 200

      const transactionPage = (after: bigint | undefined): Effect.Effect<ReadonlyArray<Raw>, SourceError> =>
        options.keepHistory
          ? query(
            "list transactions",
            `SELECT tid::text AS tid, username, description, extension FROM transaction
             WHERE tid > $1 ORDER BY tid LIMIT $2`,
            [String(after ?? 0n), pageSize]
          )
          : query(
            "list transactions",
            `SELECT DISTINCT tid::text AS tid FROM object_state WHERE tid > $1 ORDER BY tid LIMIT $2`,
            [String(after ?? 0n), pageSize]
          )

      /** the records of the tids in [first, last], in (tid, zoid) order, page by page */
      const recordsOf = (first: bigint, last: bigint): Effect.Effect<Map<bigint, Array<SourceRecord>>, SourceError> =>
        Effect.gen(function*() {
          const out = new Map<bigint, Array<SourceRecord>>()
          let after: readonly [bigint, bigint] = [first, -1n]
          for (;;) {
            const rows = yield* query(
              "read object states",
              `SELECT tid::text AS tid, zoid::text AS zoid, state FROM object_state
               WHERE (tid, zoid) > ($1::bigint, $2::bigint) AND tid <= $3::bigint
               ORDER BY tid, zoid LIMIT $4`,
              [String(after[0]), String(after[1]), String(last), rowsPerPage]
            )
            for (const r of rows) {
              const tid = big(r.tid)
              const list = out.get(tid) ?? []
              if (list.length === 0) out.set(tid, list)
              list.push({ zoid: big(r.zoid), data: r.state === null ? null : bytes(r.state) })
            }
            if (rows.length < rowsPerPage) return out
            const tail = rows[rows.length - 1]!
            after = [big(tail.tid), big(tail.zoid)]
          }
        })

      const pageFrom = (after: bigint | undefined) =>
        Effect.gen(function*() {
          const page = yield* transactionPage(after)
          if (page.length === 0) return undefined
          const first = big(page[0]!.tid)
          const last = big(page[page.length - 1]!.tid)
          const records = yield* recordsOf(first, last)
          const transactions = page.map((t): SourceTransaction => {
            const tid = big(t.tid)
            return {
              tid,
              user: bytes(t.username),
              description: bytes(t.description),
              extension: bytes(t.extension),
              records: records.get(tid) ?? []
            }
          })
          return [transactions, last] as const
        })

      // each page emits its transactions; the next page starts after the last tid while pages are full
      const transactions = (after: bigint | undefined): Stream.Stream<SourceTransaction, SourceError> =>
        Stream.paginate(after, (cursor: bigint | undefined) =>
          Effect.map(pageFrom(cursor), (result) =>
            result === undefined
              ? [[], Option.none()] as const
              : [result[0], result[0].length < pageSize ? Option.none() : Option.some(result[1])] as const))

      /** one attempt at reading the blob: SQL errors stay raw, so that a lost connection is retried */
      const readBlob = (zoid: bigint, tid: bigint) =>
        Effect.gen(function*() {
          const chunks = yield* sql.unsafe<Raw>(
            `SELECT chunk_num, chunk::bigint AS chunk FROM blob_chunk WHERE zoid = $1 AND tid = $2 ORDER BY chunk_num`,
            [String(zoid), String(tid)]
          )
          if (chunks.length === 0) return yield* fail("the blob record has no blob_chunk row", { tid, zoid })
          const oids = chunks.map((c) => Number(c.chunk))
          const sizes = yield* Effect.forEach(oids, (oid) => LargeObjects.length(oid))
          const size = sizes.reduce((a, b) => a + b, 0)
          const scope = yield* Effect.scope
          const writer = yield* Payload.open({ expectedSize: size, inMemMax: options.inMemMax, tempDir: options.tempDir, parent: scope })
          const sha256 = createHash("sha256")
          const md5 = createHash("md5")
          let read = 0
          for (const oid of oids) {
            read += yield* LargeObjects.read(oid, (chunk) => {
              sha256.update(chunk)
              md5.update(chunk)
              return writer.write(chunk)
            }).pipe(Effect.onError(() => writer.release))
          }
          if (read !== size) return yield* fail(`the blob's chunks changed while read (${read} of ${size} bytes)`, { tid, zoid })
          const payload = yield* writer.seal
          return { payload, sha256: sha256.digest("hex"), md5: md5.digest("base64") }
        }).pipe(Effect.provideService(SqlClient.SqlClient, sql))

      const blob = ({ zoid }: SourceRecord, tid: bigint) =>
        retrying(readBlob(zoid, tid), {
          policy: options.policy,
          isRetryable: (e) => e._tag === "SqlError" && isRetryableSql(e),
          what: `read the blob of ${zoid}/${tid}`
        }).pipe(
          Effect.provideContext(stats),
          Effect.mapError((e) =>
            e._tag === "ZodbSourceError" ? e : fail(`read the blob: ${e.message}`, { tid, zoid }))
        )

      const blobSize = ({ zoid }: SourceRecord, tid: bigint) =>
        Effect.gen(function*() {
          const chunks = yield* query(
            "read blob_chunk",
            `SELECT coalesce(sum(lo_lseek64(lo_open(chunk, 262144), 0, 2)), -1)::text AS size FROM blob_chunk WHERE zoid = $1 AND tid = $2`,
            [String(zoid), String(tid)]
          )
          const size = Number(chunks[0]?.size ?? -1)
          if (size < 0) return yield* fail("the blob record has no blob_chunk row", { tid, zoid })
          return size
        })

      const count = Effect.gen(function*() {
        const [records] = yield* query(
          "count records",
          `SELECT count(*)::text AS n, coalesce(sum(state_size), 0)::text AS bytes FROM object_state`,
          []
        )
        const [txs] = options.keepHistory
          ? yield* query("count transactions", `SELECT count(*)::text AS n FROM transaction WHERE tid > 0`, [])
          : yield* query("count transactions", `SELECT count(DISTINCT tid)::text AS n FROM object_state`, [])
        return { transactions: Number(txs!.n), records: Number(records!.n), bytes: Number(records!.bytes) }
      })

      return ZodbSource.of({
        describe: where,
        transactions,
        blob,
        blobSize,
        count,
        warnings: Effect.succeed([])
      })
    })
  )

