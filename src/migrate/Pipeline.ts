/**
 * The migration pipeline, as in the diagram:
 *
 *   Observer ─► [receive queue] ─► Receivers ─► [store queue] ─► Storers ─► [commit queue] ─► Committers
 *
 * Each group is a Stage (a fiber pool over a bounded queue). The invariant: a row is marked only by a
 * committer, and a committer sees only objects that S3 has accepted with verified bytes.
 */
import { Effect, Queue, Result } from "effect"
import { type SqlClient, SqlError } from "effect/sql"
import { type DatabaseError, describeCause, type PayloadError, type StoreError } from "../domain/Errors.ts"
import type { Candidate, Received, Stored } from "../domain/LargeObject.ts"
import type { Settings } from "../domain/Settings.ts"
import * as LargeObjects from "../postgres/LargeObjects.ts"
import { CopySource } from "../phases/CopySource.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import * as Aliases from "../phases/Aliases.ts"
import * as AdaptiveConcurrency from "../pipeline/AdaptiveConcurrency.ts"
import { Failures } from "../pipeline/Failures.ts"
import * as BatchRead from "./BatchRead.ts"
import * as GracefulStop from "../pipeline/GracefulStop.ts"
import * as MemoryBudget from "../core/MemoryBudget.ts"
import * as Observer from "./Observer.ts"
import { defaultPolicy } from "../core/Retry.ts"
import * as Stage from "../pipeline/Stage.ts"
import type { WatermarkTracker } from "../pipeline/Watermark.ts"
import { Stats } from "../core/Stats.ts"

/** Rows per observer page. */
export const pageSize = 1024
/** A partial commit chunk is flushed once no stored object has arrived for this long. */
export const commitIdle = "500 millis"

export type PipelineSettings = Pick<
  Settings,
  | "receiverThreads"
  | "storerThreads"
  | "maxStorerThreads"
  | "committerThreads"
  | "receiverQueue"
  | "storerQueue"
  | "committerQueue"
  | "commitChunk"
  | "inMemMax"
  | "readChunkSize"
  | "uploadChunkSize"
  | "tempDir"
  | "retries"
  | "memoryBudget"
> & {
  readonly limit?: number | undefined
  /** list only keys after this one (the resume watermark) */
  readonly start?: string | undefined
  /** told of every listed, committed and failed row, in that order per row (the watermark tracker) */
  readonly progress?: WatermarkTracker | undefined
}

export const run = (settings: PipelineSettings, stopping: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    const source = yield* CopySource
    const store = yield* ObjectStore
    const stats = yield* Stats
    // rows read once for several (aliases) settle the watermark as one group
    const progress = settings.progress === undefined ? undefined : Aliases.groupTracker(settings.progress)
    const recorded = yield* Failures
    // every skipped row holds the watermark back: it must be listed again by the next run
    const failures: typeof recorded = progress === undefined ? recorded : {
      ...recorded,
      record: (failure) => Effect.andThen(Effect.sync(() => progress.failed(failure.key)), recorded.record(failure))
    }
    const runScope = yield* Effect.scope
    const retry = defaultPolicy(settings.retries)
    const budget = yield* MemoryBudget.make(settings.memoryBudget)

    const toReceive = yield* Stage.channel<Candidate>(settings.receiverQueue)
    const toStore = yield* Stage.channel<Received>(settings.storerQueue)
    const toCommit = yield* Stage.channel<Stored>(settings.committerQueue)
    const refusals: RefusalStreak = { count: 0 }
    yield* stats.trackQueue("receive", settings.receiverQueue, Queue.size(toReceive))
    yield* stats.trackQueue("store", settings.storerQueue, Queue.size(toStore))
    yield* stats.trackQueue("commit", settings.committerQueue, Queue.size(toCommit))
    yield* Effect.forkScoped(GracefulStop.watch(stopping, toReceive, toStore))

    const observer = Stage.run({
      name: "observer",
      workers: 1,
      take: yield* Observer.pages(source, { pageSize, limit: settings.limit, stopping, start: settings.start }),
      output: toReceive,
      step: (rows) =>
        Effect.forEach(rows, ({ key, row }) =>
          Effect.andThen(
            Effect.andThen(
              Effect.sync(() => {
                progress?.listed(key)
                if (Result.isSuccess(row)) progress?.grouped(row.success)
              }),
              // every row counts as listed, aliases too
              Effect.forEach(Result.isSuccess(row) ? Aliases.rowsOf(row.success) : [key], () => stats.processed("observer"), { discard: true })
            ),
            Result.isSuccess(row) ? Stage.emit(toReceive, row.success) : failures.record(row.failure)
          ), { discard: true })
    })

    const receivers = Stage.run({
      name: "receivers",
      workers: settings.receiverThreads,
      // a batch of candidates at a time: the small ones among them are read many per statement
      take: Queue.takeBetween(toReceive, 1, BatchRead.batchCount),
      input: toReceive,
      output: toStore,
      step: (candidates) => {
        const grouped = Aliases.byKey(candidates)
        return BatchRead.receiveAll(candidates, {
          inMemMax: settings.inMemMax,
          readChunkSize: settings.readChunkSize,
          partSize: settings.uploadChunkSize,
          tempDir: settings.tempDir,
          retry,
          runScope,
          budget
        }, (received) =>
          Result.isFailure(received)
            ? Effect.forEach(Aliases.failuresOf(grouped.get(received.failure.key), received.failure), failures.record, { discard: true })
            : Effect.andThen(
              stats.processed("receiver", received.success.payload.size),
              Stage.emit(toStore, received.success).pipe(Effect.onError(() => received.success.payload.release))
            ))
      }
    })

    // as many storers as the link needs (a far S3 needs more PUTs in flight), from storerThreads up
    const storerCount = settings.maxStorerThreads > settings.storerThreads
      ? yield* AdaptiveConcurrency.make({
        initial: settings.storerThreads,
        max: settings.maxStorerThreads,
        onChange: (limit, reason) => Effect.logDebug(`storers: ${limit} at work (${reason})`)
      })
      : settings.storerThreads
    const storers = Stage.run({
      name: "storers",
      workers: storerCount,
      take: Queue.take(toStore),
      input: toStore,
      output: toCommit,
      step: ({ candidate, digests, payload }) =>
        Effect.gen(function*() {
          // one read serves the candidate and its aliases: each row gets its own Stored, and each
          // distinct object key one PUT of the same payload; a row goes to the committers as soon as its
          // object is stored, and the payload is released after the last row
          const put = new Set<string>()
          yield* Effect.gen(function*() {
            let bytes: Uint8Array | undefined
            for (const row of Aliases.rowsOf(candidate)) {
              // an object the profile keeps in the database: no PUT, its bytes go to the committers
              if (source.inline?.(row, payload.size) === true) {
                bytes ??= yield* payload.read(0, payload.size)
                yield* stats.processed("storer", payload.size)
                yield* Stage.emit(toCommit, { candidate: row, sha256: digests.sha256, key: "", inline: bytes })
                continue
              }
              const key = source.objectKey(row, digests.sha256)
              if (!put.has(key)) {
                yield* store.put({
                  key,
                  rowKey: row.key,
                  payload,
                  contentType: row.contentType,
                  md5: digests.md5,
                  partMd5s: digests.partMd5s,
                  sha256: digests.sha256,
                  metadata: { sha256: digests.sha256, sha1: digests.sha1, ...(row.oid === null ? {} : { oid: String(row.oid) }) }
                })
                put.add(key)
                yield* stats.processed("storer", payload.size)
              } else {
                // the same key as an earlier row of the group: stored already, no bytes sent
                yield* stats.processed("storer", 0)
              }
              yield* Stage.emit(toCommit, { candidate: row, sha256: digests.sha256, key })
            }
          }).pipe(Effect.ensuring(payload.release))
        })
    }).pipe(
      // stopped storers give no bytes back: let waiting receivers through to their failing hand-over
      Effect.ensuring(budget.lift)
    )

    const committers = Stage.run({
      name: "committers",
      workers: settings.committerThreads,
      take: Stage.takeChunk(toCommit, settings.commitChunk, commitIdle),
      input: toCommit,
      step: (chunk) =>
        commit(chunk, {
          stored: (stored) => stored,
          vanished: (stored) => `the row was deleted during the run; its object ${stored.key} is in S3 but no row names it`,
          marked: (stored) => Effect.sync(() => progress?.committed(stored.candidate.key)),
          failures,
          refusals
        })
    })

    // A failing stage stops the stages above it at once; the ones below still commit what was stored.
    yield* Stage.pipeline<DatabaseError | PayloadError | StoreError, SqlClient.SqlClient | Stats | CopySource | Failures>([
      observer,
      receivers,
      storers,
      committers
    ])
  })

/**
 * Rows in a row refused by PostgreSQL, across the committers of a run: a refusal that is one row's (a
 * constraint, a trigger's exception, bad data) fails that row alone; once `refusedRowsLimit` rows in a
 * row were refused and none committed, the table refuses them all (a CHECK on every row, a missing
 * grant) and the run ends.
 */
export interface RefusalStreak {
  count: number
}

export const refusedRowsLimit = 20

/** SQLSTATEs that can be one row's problem: integrity (23…), data (22…), a trigger's RAISE (P0001). */
const refusedByRow = (error: DatabaseError): boolean => {
  const cause = error.cause
  if (!SqlError.isSqlError(cause)) return false
  const state = LargeObjects.sqlState(cause)
  return state !== undefined && (state.startsWith("23") || state.startsWith("22") || state === "P0001")
}

/**
 * The committers' step, shared by migrate and upload-blobs: one commit (statement and transaction) for
 * the chunk; a row that vanished or changed meanwhile is a failure, never counted as migrated (its
 * object stays in S3); each marked row is counted and handed to `marked`. A chunk refused for what may
 * be one row's reason is committed again row by row, so that row alone fails (`commit-refused`).
 */
export const commit = <A, E, R>(
  chunk: ReadonlyArray<A>,
  options: {
    readonly stored: (item: A) => Stored
    readonly vanished: (item: A) => string
    readonly marked: (item: A) => Effect.Effect<void, E, R>
    /** where vanished rows are recorded; default the Failures service */
    readonly failures?: Failures["Service"] | undefined
    /** the run's streak of refused rows (default: this chunk's own) */
    readonly refusals?: RefusalStreak | undefined
  }
) =>
  Effect.gen(function*() {
    const source = yield* CopySource
    const stats = yield* Stats
    const failures = options.failures ?? (yield* Failures)
    const refusals = options.refusals ?? { count: 0 }
    const settle = (items: ReadonlyArray<A>, outcome: Effect.Success<ReturnType<typeof source.commit>>) =>
      Effect.gen(function*() {
        const { vanished, changed = [] } = outcome
        const gone = new Set(vanished)
        const moved = new Map(changed.map((c) => [c.stored, c.detail]))
        for (const item of items) {
          const stored = options.stored(item)
          const change = moved.get(stored)
          if (change !== undefined) {
            yield* failures.record({ key: stored.candidate.key, oid: stored.candidate.oid, reason: "row-changed", detail: change })
          } else if (gone.has(stored)) {
            yield* failures.record({
              key: stored.candidate.key,
              oid: stored.candidate.oid,
              reason: "row-vanished",
              detail: options.vanished(item)
            })
          } else {
            refusals.count = 0
            yield* options.marked(item)
            yield* stats.processed("committer", stored.candidate.size)
          }
        }
      })
    const whole = yield* Effect.result(source.commit(chunk.map(options.stored)))
    if (Result.isSuccess(whole)) return yield* settle(chunk, whole.success)
    if (!refusedByRow(whole.failure)) return yield* whole.failure
    for (const item of chunk) {
      const stored = options.stored(item)
      const one = yield* Effect.result(source.commit([stored]))
      if (Result.isSuccess(one)) {
        yield* settle([item], one.success)
        continue
      }
      if (!refusedByRow(one.failure)) return yield* one.failure
      refusals.count += 1
      if (refusals.count >= refusedRowsLimit) return yield* one.failure
      yield* failures.record({
        key: stored.candidate.key,
        oid: stored.candidate.oid,
        reason: "commit-refused",
        detail: `PostgreSQL refused to record this row: ${describeCause(one.failure.cause)}; its object is in S3, the row stays unmarked`
      })
    }
  })
