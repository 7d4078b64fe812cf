/**
 * Verifying migrated rows against the object store: the heart of `verify`, of the check `migrate
 * --finalize` runs first, and of `prune`, which only releases large objects whose copy verified.
 *
 * Rows are read in keyset pages in key order; each page is checked in parallel and completed before the
 * next one starts, so the checkpoint (the last key of the last completed page) means "every migrated
 * row up to here was checked": `--from <checkpoint>` resumes there.
 */
import { Effect, Option, Result } from "effect"
import { createHash } from "node:crypto"
import type { SqlClient } from "effect/sql"
import { DatabaseError, type MissingGrant, type SchemaMismatch, type StoreError, VerificationFailed } from "../domain/Errors.ts"
import {
  type BadObject,
  describeBad,
  isSha256Hex,
  type MigratedRow,
  type MigratedTotals,
  objectKeyOf,
  oidsOf,
  type Problem,
  uncounted,
  type VerifyLevel
} from "../domain/MigratedObject.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import type { TaskState } from "../pipeline/TaskProgress.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import * as LargeObjects from "../postgres/LargeObjects.ts"
import { AfterCopy } from "../phases/AfterCopy.ts"
import { isRetryableSql } from "../postgres/Statement.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { isTransient } from "../s3/S3Store.ts"

/** Rows per keyset page. */
export const pageSize = 1000
/** Bad objects kept for the report; beyond this they are still counted and printed. */
export const keptBad = 100_000

export interface Good {
  /** bytes checked: the size confirmed by HEAD, or the bytes downloaded */
  readonly bytes: number
  /** true when --against-source could not re-read the source because the row no longer has one */
  readonly sourceSkipped: boolean
}

const bad = (row: MigratedRow, problem: Problem, detail: string) =>
  Result.fail<BadObject>({ row, objectKey: objectKeyOf(row), problem, detail })

/** Hashes what `feed` delivers; a fresh hash per attempt, so a retried download starts over cleanly. */
const sha256Of = <E, R>(feed: (onChunk: (chunk: Uint8Array) => Effect.Effect<void>) => Effect.Effect<Option.Option<number>, E, R>) =>
  Effect.suspend(() => {
    const hash = createHash("sha256")
    return feed((chunk) => Effect.sync(() => void hash.update(chunk))).pipe(
      Effect.map(Option.map((size) => ({ size, sha256: hash.digest("hex") })))
    )
  })

/**
 * Checks one migrated row at `level`. Problems with the object are values; failing calls are errors.
 * `inlineAgainstSource`: a copy kept in the database is compared with the source whatever the level
 * (prune: nothing else proves its bytes).
 */
export const check = (
  row: MigratedRow,
  level: VerifyLevel,
  retry: RetryPolicy,
  inlineAgainstSource = false
): Effect.Effect<Result.Result<Good, BadObject>, StoreError | DatabaseError, ObjectStore | SqlClient.SqlClient | Stats> =>
  Effect.gen(function*() {
    const store = yield* ObjectStore
    if (row.sha256 !== undefined && !isSha256Hex(row.sha256.trim())) {
      return bad(row, "malformed-sha2", `sha2 ${JSON.stringify(row.sha256)} is not 64 hex digits`)
    }
    if (row.inline !== undefined) return yield* checkInline(row, row.inline, inlineAgainstSource ? "source" : level, retry)
    const key = objectKeyOf(row)
    const head = yield* store.head(key)
    if (Option.isNone(head)) return bad(row, "missing-object", `no object ${key} in ${store.target}`)
    const size = row.size ?? head.value.size
    if (head.value.size !== size) {
      return bad(row, "size-mismatch", `the row says ${row.size} bytes, the object has ${head.value.size}`)
    }
    const recorded = head.value.metadata["sha256"]
    // what the bytes must hash to: the row's recorded SHA-256 (the key itself unless a key template is
    // used); a profile that records none (relstorage) relies on the object's own sha256 metadata
    const sha256 = row.sha256 === undefined ? (recorded ?? "").toLowerCase() : row.sha256.trim().toLowerCase()
    if (recorded === undefined || !isSha256Hex(recorded) || recorded.toLowerCase() !== sha256) {
      return bad(
        row,
        "sha256-metadata-mismatch",
        recorded === undefined ? "the object has no sha256 metadata" : `the object's sha256 metadata is ${recorded}`
      )
    }
    if (level === "head") return Result.succeed({ bytes: size, sourceSkipped: false })

    const downloaded = yield* retrying(sha256Of((onChunk) => store.get(key, onChunk)), {
      policy: retry,
      isRetryable: (error) => isTransient(error.cause),
      what: `S3 GetObject ${key}`
    })
    if (Option.isNone(downloaded)) return bad(row, "missing-object", `object ${key} vanished during the check`)
    if (downloaded.value.size !== size) {
      return bad(row, "size-mismatch", `the row says ${size} bytes, ${downloaded.value.size} were downloaded`)
    }
    if (downloaded.value.sha256 !== sha256) {
      return bad(row, "content-mismatch", `the downloaded bytes have SHA-256 ${downloaded.value.sha256}`)
    }
    if (level === "deep") return Result.succeed({ bytes: downloaded.value.size, sourceSkipped: false })

    return yield* againstSource(row, sha256, downloaded.value.size, "the copy", retry)
  })

/**
 * Re-reads the row's large objects (several are concatenated in order) and compares their SHA-256 with
 * `sha256`, the copy's; a row without a large object any more (pruned) counts as skipped.
 */
const againstSource = (row: MigratedRow, sha256: string, bytes: number, copy: string, retry: RetryPolicy) =>
  Effect.gen(function*() {
    const oids = oidsOf(row)
    if (oids.length === 0) return Result.succeed<Good>({ bytes, sourceSkipped: true })
    const named = oids.length > 1 ? `large objects ${oids.join(",")}` : `large object ${oids[0]}`
    let reading = oids[0]!
    const source = yield* retrying(
      sha256Of((onChunk) =>
        Effect.gen(function*() {
          let total = 0
          for (const oid of oids) {
            reading = oid
            total += yield* LargeObjects.read(oid, onChunk)
          }
          return Option.some(total)
        })
      ),
      { policy: retry, isRetryable: isRetryableSql, what: `read ${named}` }
    ).pipe(
      Effect.map(Option.getOrThrow),
      Effect.map(Result.succeed),
      Effect.catchTag("SqlError", (error) =>
        LargeObjects.sqlState(error) === LargeObjects.undefinedObject
          ? Effect.succeed(Result.fail(reading))
          : Effect.fail(new DatabaseError({ operation: `read ${named}`, cause: error })))
    )
    if (Result.isFailure(source)) return bad(row, "source-missing", `large object ${source.failure} does not exist`)
    if (source.success.sha256 !== sha256) {
      return bad(
        row,
        "source-mismatch",
        `${named} (${source.success.size} bytes) ${oids.length > 1 ? "have" : "has"} SHA-256 ${source.success.sha256}` +
          `${copy === "the copy" ? "" : `, ${copy} ${sha256}`}`
      )
    }
    return Result.succeed<Good>({ bytes, sourceSkipped: false })
  })

/**
 * A copy kept in the database (relstorage's inline blobs): its length must be the recorded size; nothing
 * records its hash, so deep adds nothing, and against the source its SHA-256 must be the large objects'.
 */
const checkInline = (
  row: MigratedRow,
  inline: NonNullable<MigratedRow["inline"]>,
  level: VerifyLevel,
  retry: RetryPolicy
) =>
  Effect.gen(function*() {
    if (inline.length === null || inline.sha256 === null) {
      return bad(row, "missing-object", "the row has neither inline data nor an object key")
    }
    if (row.size !== undefined && inline.length !== row.size) {
      return bad(row, "size-mismatch", `the row says ${row.size} bytes, its inline data has ${inline.length}`)
    }
    if (level !== "source") return Result.succeed<Good>({ bytes: inline.length, sourceSkipped: false })
    return yield* againstSource(row, inline.sha256, inline.length, "the inline data has SHA-256", retry)
  })

/**
 * Where a verification stands; read it at any time, also after a failure or interruption. With an
 * `onPage` step (prune), the checkpoint moves only once that step is done for the page.
 */
export interface Progress {
  readonly level: VerifyLevel
  /** the run started after this key */
  readonly from: string | undefined
  /** every migrated row up to and including this key was checked */
  checkpoint: string | undefined
  checked: number
  good: number
  badCount: number
  /** bytes checked (good objects) */
  bytes: number
  /** the recorded sizes of every row checked, good or bad: what `total.bytes` sums */
  seenBytes: number
  /** the rows to check and their sizes, counted before the run (`countTotals`), or uncounted */
  total: MigratedTotals
  sourceSkipped: number
  readonly bad: Array<BadObject>
  readonly startedAt: number
  finishedAt: number | undefined
  complete: boolean
}

export const makeProgress = (level: VerifyLevel, from: string | undefined): Progress => ({
  level,
  from,
  checkpoint: from,
  checked: 0,
  good: 0,
  badCount: 0,
  bytes: 0,
  seenBytes: 0,
  total: uncounted,
  sourceSkipped: 0,
  bad: [],
  startedAt: Date.now(),
  finishedAt: undefined,
  complete: false
})

const checkpointText = (p: Progress) => `checkpoint ${p.checkpoint === undefined ? "(none yet)" : p.checkpoint.trim()}`

/**
 * Where a verification stands, for the progress display: rows checked of the rows counted, their
 * recorded bytes, and the bad ones and checkpoint in its words (`3 bad; checkpoint 0a1b…`).
 */
export const taskState = (p: Progress, badWord = "bad"): TaskState => ({
  done: p.checked,
  bytes: p.seenBytes,
  total: p.total.rows,
  totalBytes: p.total.bytes,
  complete: p.complete,
  failed: p.badCount,
  detail: `${p.badCount} ${badWord}; ${checkpointText(p)}`,
  fields: { good: p.good, bad: p.badCount, checkpoint: p.checkpoint?.trim() ?? null, complete: p.complete }
})

/**
 * Counts the rows `run` will check after `progress.from` into `progress.total` (one statement); with
 * `count` false (the user said so), they stay uncounted.
 */
export const countTotals = (progress: Progress, options: { readonly withData: boolean; readonly count: boolean }) =>
  Effect.gen(function*() {
    if (!options.count) return
    const source = yield* AfterCopy
    progress.total = yield* source.migratedTotals(progress.from, { withData: options.withData })
  })

export interface RunOptions<E, R> {
  readonly level: VerifyLevel
  readonly concurrency: number
  readonly retry: RetryPolicy
  /** only rows that still reference a large object (prune) */
  readonly withData: boolean
  /** copies kept in the database (relstorage's inline blobs) are compared with the source at any level */
  readonly inlineAgainstSource?: boolean | undefined
  /** called for each bad object as it is found */
  readonly onBad: (bad: BadObject) => Effect.Effect<void>
  /** called with the good rows of each completed page, before the checkpoint moves past them */
  readonly onPage?: (good: ReadonlyArray<MigratedRow>) => Effect.Effect<void, E, R>
}

/** Checks every migrated row after `progress.from`, updating `progress` as it goes. */
export const run = <E = never, R = never>(options: RunOptions<E, R>, progress: Progress) =>
  Effect.gen(function*() {
    const source = yield* AfterCopy
    let after = progress.checkpoint
    while (true) {
      const rows = yield* source.migratedPage(after, pageSize, { withData: options.withData })
      if (rows.length === 0) break
      // Results are recorded as they come; the checkpoint advances over the completed prefix of the
      // page, so an interrupted run resumes right after the last row checked without a gap.
      const done: Array<boolean> = rows.map(() => false)
      let prefix = 0
      const good: Array<MigratedRow> = []
      yield* Effect.forEach(rows, (row, i) =>
        Effect.gen(function*() {
          const result = yield* check(row, options.level, options.retry, options.inlineAgainstSource ?? false)
          progress.checked += 1
          progress.seenBytes += row.size ?? 0
          if (Result.isSuccess(result)) {
            good.push(row)
            progress.good += 1
            progress.bytes += result.success.bytes
            if (result.success.sourceSkipped) progress.sourceSkipped += 1
          } else {
            progress.badCount += 1
            if (progress.bad.length < keptBad) progress.bad.push(result.failure)
            yield* options.onBad(result.failure)
          }
          done[i] = true
          while (prefix < rows.length && done[prefix]) prefix += 1
          if (prefix > 0 && options.onPage === undefined) progress.checkpoint = rows[prefix - 1]!.key
        }), { concurrency: options.concurrency, discard: true })
      if (options.onPage !== undefined) yield* options.onPage(good)
      after = rows[rows.length - 1]!.key
      progress.checkpoint = after
      if (rows.length < pageSize) break
    }
    progress.complete = true
  }).pipe(Effect.ensuring(Effect.sync(() => {
    progress.finishedAt = Date.now()
  })))

/**
 * `migrate --finalize` runs this first: every migrated row is checked (HEAD level); any bad object is
 * named through `report` and finalizing is refused.
 */
export const requireAllGood = (options: {
  readonly concurrency: number
  readonly retry: RetryPolicy
  readonly report: (text: string) => Effect.Effect<void>
}): Effect.Effect<void, VerificationFailed | StoreError | DatabaseError | SchemaMismatch | MissingGrant, AfterCopy | ObjectStore | SqlClient.SqlClient | Stats> =>
  Effect.gen(function*() {
    const progress = makeProgress("head", undefined)
    yield* run({
      level: "head",
      concurrency: options.concurrency,
      retry: options.retry,
      withData: false,
      onBad: (b) => options.report(`BAD ${describeBad(b)}\n`)
    }, progress)
    yield* Effect.logInfo(`finalize: verified ${progress.checked} migrated object(s) (HEAD), ${progress.badCount} bad`)
    if (progress.badCount > 0) {
      return yield* new VerificationFailed({
        bad: progress.badCount,
        consequence: "--finalize refused (the table was left as it is); the objects are named above, " +
          "`lo-migrate verify` lists them all; repair them (e.g. clear their sha2, or delete their blob_state row, and migrate again) and retry"
      })
    }
  })

/** For messages: "12.00 MiB (12582912 bytes)". */
export const bytesText = (n: number | bigint): string => `${formatBytes(Number(n))} (${n} bytes)`

export const durationSeconds = (p: Progress): string => (((p.finishedAt ?? Date.now()) - p.startedAt) / 1000).toFixed(1)
