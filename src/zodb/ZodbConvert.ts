/**
 * zodb-convert's copy: a whole ZODB into zodb-pgjsonb, on the same parts as lo-migrate's pipeline.
 *
 * ```
 * Reader ──► [bounded] ──► Decoders (-w) ──► [bounded] ──► Blob storers ──► [bounded] ──► Writers (-w)
 * (source in TID order)   (pickles -> JSON     (S3 at or above the          (one source transaction per
 *                          as zodb-json-codec    threshold, proven by the      PostgreSQL transaction, out
 *                          writes it; refs)      store; inline below)          of order; the watermark)
 * ```
 *
 * The invariant: a transaction is in the destination only when every byte it names is where it says
 * (its blobs in S3, confirmed, before its rows are written), and its transaction_log row commits with
 * its objects, so what is committed is exactly what transaction_log holds. The watermark is the
 * highest TID below which every transaction is committed, flushed about every second; `--incremental`
 * resumes there and skips what is already committed, which fills the gaps left by out-of-order
 * commits. A transaction that cannot be converted (an unknown opcode, a missing blob) is named and
 * left out; it stops the watermark, so a rerun tries it again, and the run ends with exit 1.
 */
import { Clock, Data, Duration, Effect, Fiber, Option, Queue, Runtime, Stream } from "effect"
import type { Scope } from "effect"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import { type DatabaseError, type RunLockLost, type StoreError, withFix } from "../domain/Errors.ts"
import * as Stage from "../pipeline/Stage.ts"
import { makeTracker } from "../pipeline/Watermark.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { Staging } from "../s3/StagingStore.ts"
import type { PayloadError } from "../domain/Errors.ts"
import { decodeRecord, type DecodedRecord } from "./codec/RecordCodec.ts"
import type { CodecMode } from "./codec/RecordCodec.ts"
import type { Loss } from "./codec/Loss.ts"
import { extensionBytes } from "./codec/Extension.ts"
import {
  blobS3Key,
  isRetryable,
  PgJsonbWriter,
  type PgJsonbRecord,
  type PgJsonbTransaction
} from "./destination/PgJsonbWriter.ts"
import { DestinationLock, LockTakenOver } from "./destination/DestinationLock.ts"
import type { InvalidTransaction } from "./destination/Errors.ts"
import { hex, type SourceError, type SourceRecord, type SourceTransaction, ZodbSource } from "./sources/ZodbSource.ts"

export interface ConvertOptions {
  /** decoder and writer fibers each (-w) */
  readonly workers: number
  /** concurrent blob reads and uploads */
  readonly blobWorkers?: number | undefined
  /**
   * "inline" (default): S3 uploads in the blob stage, confirmed before the transaction is written;
   * "background": uploads in their own pool after the objects are written, the transaction sealed
   * (its transaction_log and S3 blob_state rows) once they are confirmed; "deferred": S3-bound blobs
   * staged (the ObjectStore is a StagingStore), their rows written later by --upload-blobs
   */
  readonly blobMode?: "inline" | "background" | "deferred" | undefined
  /** source transactions committed together in one PostgreSQL transaction, at most (default 32) */
  readonly batch?: number | undefined
  /** resume: start at the watermark (or after the last transaction of a finished copy), skip what is committed */
  readonly incremental: boolean
  /** blobs of at least this many bytes go to S3 when a store is given; smaller ones inline */
  readonly blobThreshold: number
  /** zodb-pgjsonb's s3-prefix: objects go under it, `s3_key` is stored without it */
  readonly s3Prefix?: string | undefined
  /** "faithful" (default): the loader-reversible forms where the codec loses information; "codec": its own */
  readonly mode?: CodecMode | undefined
  /** refuse records whose JSON loses information instead of writing them with a warning */
  readonly strict?: boolean | undefined
  readonly retry: RetryPolicy
  /** polled by the reader: true stops reading; what was read is still committed (a graceful stop) */
  readonly stopping?: Effect.Effect<boolean> | undefined
  /** called about every `progressEvery` and once at the end */
  readonly onProgress?: ((progress: ConvertProgress) => Effect.Effect<void>) | undefined
  readonly progressEvery?: Duration.Input | undefined
}

/** A transaction left out of the destination, and why. */
export interface TransactionFailure {
  readonly tid: bigint
  readonly zoid?: bigint | undefined
  /** a byte offset: in the record's pickle (codec) or in the source file */
  readonly offset?: number | undefined
  readonly problem: string
}

/** A record written with a codec loss (or refused for one with --strict). */
export interface LossReport {
  readonly tid: bigint
  readonly zoid: bigint
  readonly losses: ReadonlyArray<Loss>
}

/** The counts every display reads; one mutable object, updated by the stages (one JS thread). */
export interface ConvertProgress {
  readonly startedAt: number
  at: number
  /** when the first transaction was read and when the last one was committed: the copy phase, without setup and finalize */
  copyStartedAt: number | undefined
  copyEndedAt: number | undefined
  /** what the source holds (for the percentage and the ETA); undefined until counted */
  total: { readonly transactions: number; readonly records: number; readonly bytes: number } | undefined
  read: number
  skipped: number
  committed: number
  records: number
  /** pickle bytes of the committed records */
  bytes: number
  blobs: number
  blobsToS3: number
  blobBytes: number
  /** deferred mode: blobs staged for --upload-blobs by this run */
  blobsStaged: number
  deletions: number
  failed: Array<TransactionFailure>
  losses: Array<LossReport>
  queues: { decode: number; blobs: number; write: number; capacity: number }
  watermark: bigint | undefined
  stopped: boolean
  /** the stop came from another run taking the destination's lock (DestinationLock), named here */
  takenOverAt?: string | undefined
  finalized: boolean
}

/** The copy ended with transactions left out: they are named; a rerun with --incremental tries them again. */
export class ConvertFailed extends Data.TaggedError("ConvertFailed")<{
  readonly failed: ReadonlyArray<TransactionFailure>
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const first = this.failed.slice(0, 5).map(describeFailure).join("; ")
    return `${this.failed.length} transaction(s) not copied: ${first}${this.failed.length > 5 ? "; …" : ""}` +
      ` (fix the cause and rerun with --incremental: they are tried again)`
  }
}

/** The copy was stopped by a signal after committing what it had read: exit 130, resume with --incremental. */
export class ConvertStopped extends Data.TaggedError("ConvertStopped")<{
  readonly watermark: bigint | undefined
}> {
  readonly [Runtime.errorExitCode] = 130
  override get message() {
    return `stopped; what was read is committed${this.watermark === undefined ? "" : ` up to transaction ${hex(this.watermark)}`}: ` +
      `rerun with --incremental to go on`
  }
}

/** The result as an exit: failures and a stop become errors (exit 1 and 130), for callers that want one. */
export const outcome = (progress: ConvertProgress): Effect.Effect<ConvertProgress, ConvertFailed | ConvertStopped | LockTakenOver> =>
  progress.failed.length > 0
    ? Effect.fail(new ConvertFailed({ failed: progress.failed }))
    : progress.takenOverAt !== undefined
    ? Effect.fail(new LockTakenOver({ where: progress.takenOverAt }))
    : progress.stopped
    ? Effect.fail(new ConvertStopped({ watermark: progress.watermark }))
    : Effect.succeed(progress)

/** The destination already holds a copy and --incremental was not given. */
export class DestinationNotEmpty extends Data.TaggedError("DestinationNotEmpty")<{
  readonly where: string
  readonly lastTid: bigint | undefined
  readonly inProgress: boolean
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    return `add --incremental to ${this.inProgress ? "resume it" : "copy what is new since"}, or convert into an empty database`
  }
  override get message() {
    return withFix(
      `${this.where} already holds ${this.inProgress ? "an unfinished copy" : "a copy"}` +
        `${this.lastTid === undefined ? "" : ` (last transaction ${hex(this.lastTid)})`}`,
      this.fix
    )
  }
}

export const describeFailure = (f: TransactionFailure): string =>
  `transaction ${hex(f.tid)}${f.zoid === undefined ? "" : ` oid ${hex(f.zoid)}`}` +
  `${f.offset === undefined ? "" : ` at byte ${f.offset}`}: ${f.problem}`

const isBlobClass = (d: DecodedRecord) => d.classMod === "ZODB.blob" && d.className === "Blob"

/** A decoded record on its way to the writer; a blob record still has to be stored. */
interface Pending {
  readonly source: SourceRecord
  readonly decoded: DecodedRecord | undefined
  blob?: PgJsonbRecord["blob"]
  /** background mode: bound for S3, uploaded after the objects are written */
  upload?: boolean
  /** deferred mode: staged for --upload-blobs, no blob_state row yet */
  staged?: boolean
}

/** The blob's bytes ended before its size. */
class Short extends Data.TaggedError("Short")<{ readonly problem: string }> {}

interface Decoded {
  readonly tx: SourceTransaction
  readonly key: string
  readonly records: ReadonlyArray<Pending>
  readonly extension: Uint8Array
}

const fullKey = (prefix: string | undefined, key: string) =>
  prefix === undefined || prefix === "" ? key : `${prefix.replace(/\/+$/, "")}/${key}`

export const run = (
  options: ConvertOptions
): Effect.Effect<
  ConvertProgress,
  DestinationNotEmpty | SourceError | DatabaseError | StoreError | RunLockLost,
  ZodbSource | PgJsonbWriter | Stats | Scope.Scope
> =>
  Effect.gen(function*() {
    const source = yield* ZodbSource
    const writer = yield* PgJsonbWriter
    // taken by the layer that built the writer, before it looked at the destination
    const lock = yield* Effect.serviceOption(DestinationLock)
    const store = yield* Effect.serviceOption(ObjectStore)
    const staging = yield* Effect.serviceOption(Staging)
    const mode = options.mode ?? "faithful"
    const workers = Math.max(1, options.workers)
    const blobWorkers = Math.max(1, options.blobWorkers ?? workers * 2)
    const startedAt = yield* Clock.currentTimeMillis
    const progress: ConvertProgress = {
      startedAt,
      at: startedAt,
      copyStartedAt: undefined,
      copyEndedAt: undefined,
      total: undefined,
      read: 0,
      skipped: 0,
      committed: 0,
      records: 0,
      bytes: 0,
      blobs: 0,
      blobsToS3: 0,
      blobBytes: 0,
      blobsStaged: 0,
      deletions: 0,
      failed: [],
      losses: [],
      queues: { decode: 0, blobs: 0, write: 0, capacity: workers * 2 },
      watermark: undefined,
      stopped: false,
      finalized: false
    }

    // where to start, and what may already be there
    const inspection = writer.schema.inspection
    const hasData = inspection._tag === "PgJsonb" && inspection.hasData
    const inProgress = inspection._tag === "PgJsonb" && inspection.copyInProgress
    const lastTid = yield* writer.lastTid
    if (hasData && !options.incremental) {
      return yield* new DestinationNotEmpty({ where: inspection.where, lastTid, inProgress })
    }
    const watermark = yield* writer.readWatermark
    // an unfinished copy resumes at its watermark (from the start if it never recorded one), and
    // everything up to its last committed tid is checked; a finished one continues after its last tid
    const start = !options.incremental ? undefined : inProgress ? watermark : lastTid
    const mayBeCommitted = options.incremental && inProgress && lastTid !== undefined ? lastTid : undefined
    progress.watermark = start
    if (options.incremental && start !== undefined) {
      yield* Effect.logInfo(`resuming after transaction ${hex(start)}${inProgress ? " (the watermark of an unfinished copy)" : " (the last one copied)"}`)
    }

    yield* Effect.forkChild(
      Effect.flatMap(source.count, (total) => Effect.sync(() => {
        progress.total = total
      })).pipe(Effect.ignore)
    )

    // every statement on the destination outlives a lost connection: commits are idempotent, and so
    // are the watermark, the lookups and the finalize step
    const again = <A, E extends DatabaseError | InvalidTransaction>(what: string, effect: Effect.Effect<A, E>) =>
      retrying(effect, { policy: options.retry, isRetryable, what })

    const tracker = makeTracker()
    const fail = (failure: TransactionFailure, key: string) =>
      Effect.sync(() => {
        progress.failed.push(failure)
        tracker.failed(key)
      }).pipe(Effect.andThen(Effect.logError(describeFailure(failure))))

    const decodeQ = yield* Stage.channel<SourceTransaction>(workers * 2)
    const blobQ = yield* Stage.channel<Decoded>(workers * 2)
    // room for a full batch per writer, so that small transactions can travel together
    const writeQ = yield* Stage.channel<Decoded>(Math.max(workers * 2, options.batch ?? 32))
    // background mode: written objects wait here for their uploads, then for their seal
    const uploadQ = yield* Stage.channel<Decoded>(blobWorkers * 2)
    const sealQ = yield* Stage.channel<Decoded>(workers * 2)

    // ---- reader: the source in TID order --------------------------------------------------------
    const asked = options.stopping ?? Effect.succeed(false)
    const stopping = Option.isNone(lock) ? asked : Effect.gen(function*() {
      if (!(yield* lock.value.lost)) return yield* asked
      progress.takenOverAt = lock.value.where
      return true
    })
    const reader = Effect.gen(function*() {
      yield* source.transactions(start).pipe(
        Stream.runForEachWhile((tx) =>
          Effect.gen(function*() {
            if (yield* stopping) {
              progress.stopped = true
              return false
            }
            if (progress.read++ === 0) progress.copyStartedAt = yield* Clock.currentTimeMillis
            if (mayBeCommitted !== undefined && tx.tid <= mayBeCommitted && (yield* again(`look up transaction ${hex(tx.tid)}`, writer.hasTransaction(tx.tid)))) {
              progress.skipped++
              return true
            }
            tracker.listed(hex(tx.tid))
            return yield* Stage.emit(decodeQ, tx).pipe(Effect.as(true), Effect.catchTag("Done", () => Effect.succeed(false)))
          })
        )
      )
    }).pipe(Effect.ensuring(Queue.end(decodeQ)))

    // ---- decoders: pickles to the codec's JSON ------------------------------------------------------
    const decode = (tx: SourceTransaction) =>
      Effect.gen(function*() {
        const key = hex(tx.tid)
        const records: Array<Pending> = []
        for (const record of tx.records) {
          if (record.data === null) {
            records.push({ source: record, decoded: undefined })
            continue
          }
          let decoded: DecodedRecord
          try {
            decoded = decodeRecord(record.data, { mode })
          } catch (error) {
            const e = error as { readonly message?: string; readonly offset?: number }
            return yield* fail({
              tid: tx.tid,
              zoid: record.zoid,
              offset: e.offset ?? record.offset,
              problem: `the record cannot be decoded: ${e.message ?? String(error)}` +
                (record.offset === undefined ? "" : ` (record at byte ${record.offset} of the source)`)
            }, key)
          }
          const lost = decoded.losses.filter((l) => !l.repaired)
          if (decoded.losses.length > 0) {
            progress.losses.push({ tid: tx.tid, zoid: record.zoid, losses: decoded.losses })
          }
          if (options.strict === true && lost.length > 0) {
            return yield* fail({
              tid: tx.tid,
              zoid: record.zoid,
              problem: `--strict: its JSON would lose information (${lost.map((l) => l.reason).join(", ")})`
            }, key)
          }
          records.push({ source: record, decoded })
        }
        let extension: Uint8Array
        try {
          extension = extensionBytes(tx.extension)
        } catch (error) {
          return yield* fail({ tid: tx.tid, problem: `the transaction's extension cannot be decoded: ${String(error)}` }, key)
        }
        yield* Stage.emit(blobQ, { tx, key, records, extension })
      })

    // ---- blob storers: S3 (proven) at or above the threshold, inline below ---------------------------
    const blobMode = options.blobMode ?? "inline"
    const toS3 = store._tag === "Some"
    type BlobOutcome = { readonly ok: true; readonly blob: NonNullable<Pending["blob"]> } | { readonly ok: false; readonly problem: string }
    const outcome = <R>(effect: Effect.Effect<NonNullable<Pending["blob"]>, SourceError | PayloadError | Short | StoreError, R>) =>
      effect.pipe(
        Effect.map((blob): BlobOutcome => ({ ok: true, blob })),
        Effect.catchTags({
          ZodbSourceError: (e) => Effect.succeed<BlobOutcome>({ ok: false, problem: e.problem }),
          PayloadError: (e) => Effect.succeed<BlobOutcome>({ ok: false, problem: e.message }),
          Short: (e) => Effect.succeed<BlobOutcome>({ ok: false, problem: e.problem })
        })
      )
    /** reads the blob and puts it into the store (S3, proven; or the staging directory), by its key */
    const putBlob = (pending: Pending, item: Decoded) =>
      Effect.scoped(Effect.gen(function*() {
        const content = yield* source.blob(pending.source, item.tx.tid)
        const key = blobS3Key(pending.source.zoid, item.tx.tid)
        yield* store.pipe(Option.getOrThrow).put({
          key: fullKey(options.s3Prefix, key),
          rowKey: `${hex(pending.source.zoid)}/${item.key}`,
          payload: content.payload,
          contentType: "application/octet-stream",
          metadata: { sha256: content.sha256 },
          md5: content.md5,
          sha256: content.sha256
        })
        return { size: content.payload.size, s3Key: key }
      }))
    const readInline = (pending: Pending, item: Decoded) =>
      Effect.scoped(Effect.gen(function*() {
        const content = yield* source.blob(pending.source, item.tx.tid)
        const size = content.payload.size
        const data = yield* content.payload.read(0, size)
        if (data.length !== size) return yield* new Short({ problem: `the blob ended at ${data.length} of ${size} bytes` })
        return { size, data }
      }))
    const blobFailed = (item: Decoded, pending: Pending, problem: string) =>
      fail({ tid: item.tx.tid, zoid: pending.source.zoid, problem: `its blob: ${problem}` }, item.key)

    // ---- blob storers: S3 (proven) at or above the threshold, inline below; background: inline only,
    // the S3-bound ones wait for the uploaders; deferred: staged (file, then manifest line, each fsync'd)
    const storeBlobs = (item: Decoded) =>
      Effect.gen(function*() {
        for (const pending of item.records) {
          if (pending.decoded === undefined || !isBlobClass(pending.decoded)) continue
          const size = toS3 ? yield* source.blobSize(pending.source, item.tx.tid).pipe(Effect.catchTag("ZodbSourceError", () => Effect.succeed(-1))) : 0
          const bound = toS3 && size >= options.blobThreshold
          if (bound && blobMode === "background") {
            pending.upload = true
            continue
          }
          if (bound && blobMode === "deferred" && staging._tag === "Some" && staging.value.isStaged(`${hex(pending.source.zoid)}/${item.key}`)) {
            pending.staged = true
            continue
          }
          const result = yield* outcome(bound ? putBlob(pending, item) : readInline(pending, item))
          if (!result.ok) return yield* blobFailed(item, pending, result.problem)
          progress.blobs++
          progress.blobBytes += result.blob.size
          if (bound && blobMode === "deferred") {
            // its blob_state row is written by --upload-blobs, once S3 holds the object
            pending.staged = true
            progress.blobsStaged++
            continue
          }
          if (bound) progress.blobsToS3++
          pending.blob = result.blob
        }
        yield* Stage.emit(writeQ, item)
      })

    // ---- background uploaders: the S3-bound blobs of transactions whose objects are written --------
    const uploadBlobs = (item: Decoded) =>
      Effect.gen(function*() {
        for (const pending of item.records) {
          if (pending.upload !== true) continue
          const result = yield* outcome(putBlob(pending, item))
          if (!result.ok) return yield* blobFailed(item, pending, result.problem)
          pending.blob = result.blob
          progress.blobs++
          progress.blobsToS3++
          progress.blobBytes += result.blob.size
        }
        yield* Stage.emit(sealQ, item)
      })

    // ---- writers: one PostgreSQL transaction per source transaction ---------------------------------
    const toDestination = (item: Decoded): PgJsonbTransaction => ({
      tid: item.tx.tid,
      user: item.tx.user,
      description: item.tx.description,
      extension: item.extension,
      records: item.records.map((p): PgJsonbRecord => p.decoded === undefined
        ? { zoid: p.source.zoid, classMod: null, className: null, stateJson: null, stateSize: 0, refs: [] }
        : {
          zoid: p.source.zoid,
          classMod: p.decoded.classMod,
          className: p.decoded.className,
          stateJson: p.decoded.stateJson,
          stateSize: p.decoded.stateSize,
          refs: p.decoded.refs,
          blob: p.blob
        })
    })
    const committed = (item: Decoded, deletions: number) =>
      Effect.sync(() => {
        progress.committed++
        progress.records += item.records.length
        progress.deletions += deletions
        for (const r of item.tx.records) progress.bytes += r.data?.length ?? 0
        tracker.committed(item.key)
      })
    const writeOne = (item: Decoded) =>
      retrying(writer.commit(toDestination(item)), {
        policy: options.retry,
        isRetryable,
        what: `commit transaction ${item.key}`
      }).pipe(
        Effect.flatMap((result) => committed(item, result.deletions)),
        Effect.catchTag("InvalidTransaction", (e) =>
          fail({ tid: item.tx.tid, zoid: e.zoid, problem: e.problem }, item.key))
      )
    // small transactions travel together, one PostgreSQL transaction for a chunk of them; a chunk with
    // an invalid transaction is written one by one, so that only that one fails
    const write = (items: ReadonlyArray<Decoded>) =>
      items.length === 1
        ? writeOne(items[0]!)
        : retrying(writer.commitMany(items.map(toDestination)), {
          policy: options.retry,
          isRetryable,
          what: `commit transactions ${items[0]!.key}..${items[items.length - 1]!.key}`
        }).pipe(
          Effect.flatMap((results) => Effect.forEach(items, (item, i) => committed(item, results[i]!.deletions), { discard: true })),
          Effect.catchTag("InvalidTransaction", () => Effect.forEach(items, writeOne, { discard: true }))
        )

    // background mode: the rows first (never waiting for S3) with a pending mark, the S3 blob rows once
    // the uploads are proven
    const writeObjects = (item: Decoded) =>
      retrying(writer.commitPending(toDestination(item)), { policy: options.retry, isRetryable, what: `commit transaction ${item.key}` }).pipe(
        Effect.andThen(Stage.emit(uploadQ, item)),
        Effect.catchTag("InvalidTransaction", (e) => fail({ tid: item.tx.tid, zoid: e.zoid, problem: e.problem }, item.key))
      )
    const sealOne = (item: Decoded) => {
      const blobs = item.records.flatMap((p) =>
        p.upload === true && p.blob?.s3Key !== undefined ? [{ zoid: p.source.zoid, size: p.blob.size, s3Key: p.blob.s3Key }] : [])
      return retrying(writer.seal({ tid: item.tx.tid, user: item.tx.user, description: item.tx.description, extension: item.extension }, blobs), {
        policy: options.retry,
        isRetryable,
        what: `seal transaction ${item.key}`
      }).pipe(
        Effect.andThen(committed(item, item.records.filter((p) => p.decoded === undefined).length)),
        Effect.catchTag("InvalidTransaction", (e) => fail({ tid: item.tx.tid, zoid: e.zoid, problem: e.problem }, item.key))
      )
    }

    // ---- the watermark, flushed about every second, and the progress --------------------------------
    let flushed = start
    const flush = Effect.suspend(() => {
      const current = tracker.current()
      if (current === undefined) return Effect.void
      const tid = BigInt(`0x${current}`)
      if (flushed !== undefined && tid <= flushed) return Effect.void
      return Effect.andThen(again("record the watermark", writer.setWatermark(tid)), Effect.sync(() => {
        flushed = tid
        progress.watermark = tid
      }))
    })
    const report = Effect.gen(function*() {
      progress.at = yield* Clock.currentTimeMillis
      progress.queues = {
        decode: yield* Queue.size(decodeQ),
        blobs: yield* Queue.size(blobQ),
        write: yield* Queue.size(writeQ),
        capacity: workers * 2
      }
      if (options.onProgress !== undefined) yield* options.onProgress(progress)
    })
    const every = options.progressEvery ?? "1 second"
    const ticker = yield* Effect.forkChild(
      Effect.forever(Effect.andThen(Effect.sleep(Duration.min(Duration.fromInputUnsafe(every), Duration.seconds(1))),
        Effect.andThen(flush.pipe(Effect.ignore), report)))
    )

    const flow = Stage.pipeline<SourceError | DatabaseError | StoreError, Stats>([
      reader,
      Stage.run<SourceTransaction, never, never>({ name: "decoder", workers, take: Queue.take(decodeQ), step: decode, input: decodeQ, output: blobQ }),
      Stage.run({ name: "blob-storer", workers: blobWorkers, take: Queue.take(blobQ), step: storeBlobs, input: blobQ, output: writeQ }),
      ...(blobMode === "background"
        ? [
          Stage.run<Decoded, DatabaseError, Stats>({ name: "writer", workers, take: Queue.take(writeQ), step: writeObjects, input: writeQ, output: uploadQ }),
          Stage.run<Decoded, SourceError | StoreError, never>({ name: "uploader", workers: blobWorkers, take: Queue.take(uploadQ), step: uploadBlobs, input: uploadQ, output: sealQ }),
          Stage.run<Decoded, DatabaseError, Stats>({ name: "sealer", workers, take: Queue.take(sealQ), step: sealOne, input: sealQ })
        ]
        : [Stage.run({ name: "writer", workers, take: Stage.takeChunk(writeQ, options.batch ?? 32, "2 millis"), step: write, input: writeQ })])
    ])
    // the watermark is recorded also when the flow fails: a rerun starts as late as it safely can
    // without its lock (its session lost and not to be had again) the copy must not go on
    const guarded = Option.isNone(lock) ? flow : Effect.raceFirst(flow, lock.value.failure)
    yield* guarded.pipe(Effect.onError(() => Effect.andThen(Fiber.interrupt(ticker), flush.pipe(Effect.ignore))))
    progress.copyEndedAt = yield* Clock.currentTimeMillis
    yield* Fiber.interrupt(ticker)
    yield* flush
    yield* report

    // another run may have taken the lock after the reader was done: it must not be finalized under it
    if (Option.isSome(lock) && (yield* lock.value.lost)) {
      progress.stopped = true
      progress.takenOverAt = lock.value.where
    }
    // a copy with failures keeps its watermark (and tombstones): the rerun fills what is missing
    if (progress.failed.length === 0 && !progress.stopped) {
      // only a finished copy's earlier transactions were finalized; an unfinished one's (below its
      // watermark) still hold their tombstones and uncompacted history: those are finalized in full
      const finalize = again("finalize the destination", writer.finalize(start === undefined || inProgress ? undefined : { sinceTid: start }))
      yield* Option.isNone(lock) ? finalize : Effect.raceFirst(finalize, lock.value.failure)
      progress.finalized = true
    }
    return progress
  })


/** What `--dry-run` reports; nothing is written anywhere. */
export interface DryRun {
  readonly transactions: number
  readonly records: number
  readonly noData: number
  readonly pickleBytes: number
  readonly blobs: number
  readonly blobBytes: number
  readonly blobsToS3: number
  readonly bytesToS3: number
  readonly blobsInline: number
  readonly bytesInline: number
  /** records the codec cannot convert (the copy would leave their transactions out) */
  readonly undecodable: ReadonlyArray<TransactionFailure>
  /** records whose codec JSON loses information */
  readonly losses: number
  readonly seconds: number
  /** decoded records per second in this process: the copy's decode stage, one fiber */
  readonly decodeRate: number
}

/** Reads and decodes the whole source, as the copy would, and writes nothing. */
export const dryRun = (
  options: { readonly blobThreshold: number; readonly toS3: boolean; readonly mode?: CodecMode | undefined }
): Effect.Effect<DryRun, SourceError, ZodbSource> =>
  Effect.gen(function*() {
    const source = yield* ZodbSource
    const started = yield* Clock.currentTimeMillis
    const counts = { transactions: 0, records: 0, noData: 0, pickleBytes: 0, blobs: 0, blobBytes: 0, blobsToS3: 0, bytesToS3: 0, losses: 0 }
    const undecodable: Array<TransactionFailure> = []
    yield* source.transactions(undefined).pipe(
      Stream.runForEach((tx) =>
        Effect.gen(function*() {
          counts.transactions++
          for (const record of tx.records) {
            counts.records++
            if (record.data === null) {
              counts.noData++
              continue
            }
            counts.pickleBytes += record.data.length
            let decoded: DecodedRecord
            try {
              decoded = decodeRecord(record.data, { mode: options.mode ?? "faithful" })
            } catch (error) {
              const e = error as { readonly message?: string; readonly offset?: number }
              undecodable.push({ tid: tx.tid, zoid: record.zoid, offset: e.offset ?? record.offset, problem: e.message ?? String(error) })
              continue
            }
            if (decoded.losses.length > 0) counts.losses++
            if (isBlobClass(decoded)) {
              const size = yield* source.blobSize(record, tx.tid)
              counts.blobs++
              counts.blobBytes += size
              if (options.toS3 && size >= options.blobThreshold) {
                counts.blobsToS3++
                counts.bytesToS3 += size
              }
            }
          }
        })
      )
    )
    const seconds = Math.max(0.001, ((yield* Clock.currentTimeMillis) - started) / 1000)
    return {
      ...counts,
      blobsInline: counts.blobs - counts.blobsToS3,
      bytesInline: counts.blobBytes - counts.bytesToS3,
      undecodable,
      seconds,
      decodeRate: counts.records / seconds
    }
  })
