/**
 * `zodb-convert --upload-blobs MANIFEST`: the second step of the deferred mode. For each manifest line
 * (a blob staged by the copy, see s3/Manifest.ts for the format): the staged file is checked against
 * its SHA-256, uploaded and confirmed (S3Store), its blob_state row written (zodb-pgjsonb's key, without
 * the s3-prefix), and the staged file deleted once the row is there. Lines already done (the row is
 * there with that key and size) only lose their file; lines whose transaction the copy has not
 * committed yet wait (counted, exit 1: finish the copy and run again). It can be killed and rerun at
 * any point: each step is idempotent, and a line is done exactly when its row exists.
 *
 * Meanwhile zodb-pgjsonb sees a staged blob as missing (no blob_state row: POSKeyError on opening it),
 * never as a key S3 does not have.
 */
import { Data, Effect, Option, Queue, Runtime } from "effect"
import { SqlClient } from "effect/sql"
import { PgTypes } from "@effect/sql-pg"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs/promises"
import * as Payload from "../core/Payload.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import { DatabaseError, type ManifestError, type RunLockLost, type StoreError } from "../domain/Errors.ts"
import * as Stage from "../pipeline/Stage.ts"
import type { TaskState, Watch } from "../pipeline/TaskProgress.ts"
import { isRetryableSql } from "../postgres/Statement.ts"
import * as Manifest from "../s3/Manifest.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { DestinationLock, type LockTakenOver, watch as watchLock } from "./destination/DestinationLock.ts"
import { blobS3Key } from "./destination/PgJsonbWriter.ts"

export interface UploadReport {
  readonly lines: number
  readonly uploaded: number
  readonly alreadyDone: number
  /** lines whose transaction is not in transaction_log yet */
  readonly waiting: number
  readonly failed: ReadonlyArray<{ readonly line: number; readonly problem: string }>
  readonly bytes: number
}

export class UploadIncomplete extends Data.TaggedError("UploadIncomplete")<{
  readonly report: UploadReport
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    const r = this.report
    return `${r.failed.length} line(s) failed${r.failed.length === 0 ? "" : ` (${r.failed.slice(0, 3).map((f) => `line ${f.line}: ${f.problem}`).join("; ")})`}` +
      `, ${r.waiting} wait for their transaction: finish the copy (zodb-convert --incremental), then run --upload-blobs again`
  }
}

const rowKeyPattern = /^([0-9a-f]{16})\/([0-9a-f]{16})$/

/** The manifest's lines in order, uploaded `concurrency` at a time. */
export const run = (options: {
  readonly manifest: string
  readonly concurrency: number
  readonly retry: RetryPolicy
  readonly onLine?: ((report: UploadReport) => Effect.Effect<void>) | undefined
  /** runs the upload with its progress shown (TaskProgress): lines settled of the manifest's */
  readonly watch?: Watch | undefined
  /** count the manifest's lines first (one more read of it), so that the progress has a total (default true) */
  readonly count?: boolean | undefined
}): Effect.Effect<
  UploadReport,
  ManifestError | DatabaseError | StoreError | LockTakenOver | RunLockLost,
  SqlClient.SqlClient | ObjectStore | Stats
> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const store = yield* ObjectStore
    const report = { lines: 0, uploaded: 0, alreadyDone: 0, waiting: 0, failed: [] as Array<{ line: number; problem: string }>, bytes: 0 }
    // lines finished (uploaded, already done, waiting or failed) and the bytes they name
    const settled = { lines: 0, bytes: 0, complete: false }
    const query = <A extends object>(what: string, text: string, params: ReadonlyArray<unknown>) =>
      retrying(sql.unsafe<A>(text, params as Array<never>), { policy: options.retry, isRetryable: isRetryableSql, what }).pipe(
        Effect.mapError((cause) => new DatabaseError({ operation: what, cause }))
      )

    const one = (line: Manifest.Line) =>
      Effect.gen(function*() {
        report.lines++
        if (typeof line.entry === "string") {
          report.failed.push({ line: line.number, problem: line.entry })
          return
        }
        const entry = line.entry
        const match = rowKeyPattern.exec(entry.rowKey)
        if (match === null) {
          report.failed.push({ line: line.number, problem: `row key ${entry.rowKey} is not zoid/tid (a manifest of another command?)` })
          return
        }
        const zoid = BigInt.asIntN(64, BigInt(`0x${match[1]}`))
        const tid = BigInt.asIntN(64, BigInt(`0x${match[2]}`))
        const key = blobS3Key(BigInt(`0x${match[1]}`), BigInt(`0x${match[2]}`))
        const [state] = yield* query<{ committed: boolean; s3_key: string | null; blob_size: string | null }>(
          "look up the blob",
          `SELECT EXISTS (SELECT 1 FROM transaction_log WHERE tid = $2) AS committed,
                  (SELECT s3_key FROM blob_state WHERE zoid = $1 AND tid = $2) AS s3_key,
                  (SELECT blob_size::text FROM blob_state WHERE zoid = $1 AND tid = $2) AS blob_size`,
          [PgTypes.int8(zoid), PgTypes.int8(tid)]
        )
        const removeStaged = Effect.promise(() => NodeFs.rm(entry.stagedPath, { force: true }))
        if (state?.s3_key === key && Number(state.blob_size) === entry.size) {
          report.alreadyDone++
          return yield* removeStaged
        }
        if (state?.committed !== true) {
          report.waiting++
          return
        }
        // the staged file must still be what was staged: a damaged one fails its line, never uploads
        const checked = yield* Effect.tryPromise({
          try: async () => {
            const hash = createHash("sha256")
            let size = 0
            const handle = await NodeFs.open(entry.stagedPath, "r")
            try {
              for await (const chunk of handle.createReadStream({ autoClose: false }) as AsyncIterable<Buffer>) {
                hash.update(chunk)
                size += chunk.length
              }
            } finally {
              await handle.close()
            }
            return { size, sha256: hash.digest("hex") }
          },
          catch: (cause) => String((cause as { code?: string }).code ?? cause)
        }).pipe(Effect.result)
        if (checked._tag === "Failure") {
          report.failed.push({ line: line.number, problem: `staged file ${entry.stagedPath}: ${checked.failure}` })
          return
        }
        if (checked.success.size !== entry.size || checked.success.sha256 !== entry.sha256) {
          report.failed.push({
            line: line.number,
            problem: `staged file ${entry.stagedPath} is not what was staged (${checked.success.size} bytes, sha256 ${checked.success.sha256})`
          })
          return
        }
        yield* Effect.scoped(Effect.gen(function*() {
          const handle = yield* Effect.acquireRelease(
            Effect.promise(() => NodeFs.open(entry.stagedPath, "r")),
            (h) => Effect.promise(() => h.close().catch(() => undefined))
          )
          yield* store.put({
            key: entry.s3Key,
            rowKey: entry.rowKey,
            payload: Payload.fromFile({ path: entry.stagedPath, handle, size: entry.size, release: Effect.void }),
            contentType: entry.contentType,
            metadata: { sha256: entry.sha256 },
            md5: entry.md5 === "" ? undefined : entry.md5,
            sha256: entry.sha256
          })
        }))
        yield* query(
          "record the blob",
          `INSERT INTO blob_state (zoid, tid, blob_size, data, s3_key) VALUES ($1, $2, $3, NULL, $4)
           ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = NULL, s3_key = EXCLUDED.s3_key`,
          [PgTypes.int8(zoid), PgTypes.int8(tid), PgTypes.int8(BigInt(entry.size)), PgTypes.text(key)]
        )
        report.uploaded++
        report.bytes += entry.size
        yield* removeStaged
      }).pipe(
        Effect.andThen(Effect.sync(() => {
          settled.lines++
          settled.bytes += typeof line.entry === "string" ? 0 : line.entry.size
        })),
        Effect.andThen(options.onLine === undefined ? Effect.void : options.onLine(report))
      )

    yield* Manifest.checkHeader(options.manifest)
    const total = options.count === false ? undefined : yield* Manifest.totals(options.manifest)
    const state = Effect.sync((): TaskState => ({
      done: settled.lines,
      bytes: settled.bytes,
      total: total?.lines,
      totalBytes: total?.bytes,
      complete: settled.complete,
      failed: report.failed.length + report.waiting,
      detail: `${report.uploaded} uploaded, ${report.alreadyDone} already done, ${report.waiting} waiting for their transaction, ` +
        `${report.failed.length} failed`,
      fields: { uploaded: report.uploaded, alreadyDone: report.alreadyDone, waiting: report.waiting, failedLines: report.failed.length }
    }))
    // the manifest is streamed into a bounded queue: never held in memory, `concurrency` lines in flight
    const lines = yield* Stage.channel<Manifest.Line>(Math.max(1, options.concurrency) * 2)
    const reader = Manifest.forEachLine(options.manifest, (line) => Effect.asVoid(Queue.offer(lines, line))).pipe(
      Effect.ensuring(Queue.end(lines))
    )
    const flow = Stage.pipeline<ManifestError | DatabaseError | StoreError, Stats>([
      reader,
      Stage.run({ name: "uploader", workers: Math.max(1, options.concurrency), take: Queue.take(lines), step: one, input: lines })
    ])
    // every line is idempotent: losing the lock may cut one short, a rerun finishes it
    const lock = yield* Effect.serviceOption(DestinationLock)
    const upload = (Option.isNone(lock) ? flow : Effect.raceFirst(flow, watchLock(lock.value))).pipe(Effect.andThen(Effect.sync(() => {
      settled.complete = true
    })))
    yield* (options.watch === undefined ? upload : options.watch(state, upload))
    return report
  })
