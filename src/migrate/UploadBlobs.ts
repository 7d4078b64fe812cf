/**
 * `upload-blobs`: the second half of the deferred mode. Reads the manifest (streaming), uploads each
 * staged object that is not done yet, marks its row by the same rule as migrate (one UPDATE per chunk,
 * only after S3 has the verified bytes), then deletes the staged file.
 *
 * "Done" needs no state of its own: a line is done when what its row records equals the line's matching
 * field (nice2 and table: the SHA-256; relstorage: the S3 key, see Recorded.ts). That holds from the
 * commit on, so a kill at any moment leaves each line either done (its staged file, if
 * still there, is deleted by the next run) or not done (uploaded again: a content-addressed PUT of the
 * same bytes is harmless). A staged file that is missing or whose bytes do not hash to the line's
 * sha256 is a failure that names the line: never a silent skip.
 */
import { Effect, Queue, Result } from "effect"
import type { Exit } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs/promises"
import * as ContentType from "../domain/ContentType.ts"
import type { DatabaseError, ManifestError, PayloadError, StoreError } from "../domain/Errors.ts"
import { describeCause, PayloadError as PayloadFailure } from "../domain/Errors.ts"
import type { Candidate, RowFailure, Stored } from "../domain/LargeObject.ts"
import * as Recorded from "../domain/Recorded.ts"
import type { Settings } from "../domain/Settings.ts"
import { Failures } from "../pipeline/Failures.ts"
import * as Payload from "../core/Payload.ts"
import * as Pipeline from "./Pipeline.ts"
import type { TaskState, Watch } from "../pipeline/TaskProgress.ts"
import * as Stage from "../pipeline/Stage.ts"
import { Stats } from "../core/Stats.ts"
import * as RunLock from "../postgres/RunLock.ts"
import { CopySource } from "../phases/CopySource.ts"
import { checkConnection, describeUrl } from "../postgres/Statement.ts"
import * as Manifest from "../s3/Manifest.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"

/** Manifest lines checked against the table per statement. */
export const checkBatch = 256
const readChunk = 8 * 1024 * 1024

export interface UploadSummary {
  readonly uploaded: number
  readonly bytes: number
  /** lines whose row was already marked (their staged files are removed) */
  readonly alreadyDone: number
  readonly failed: number
  readonly failures: ReadonlyArray<RowFailure>
  readonly durationMs: number
}

interface Pending {
  readonly line: number
  readonly entry: Manifest.Entry
}

interface Uploaded {
  readonly stored: Stored
  readonly line: number
  readonly path: string
}

const lineFailure = (p: Pending, reason: RowFailure["reason"], detail: string): RowFailure => ({
  key: p.entry.rowKey,
  oid: p.entry.oid,
  reason,
  detail: `manifest line ${p.line}: ${detail}`
})

/** The row as the staging run listed it, from its manifest line. */
const candidateOf = (entry: Manifest.Entry): Candidate => ({
  key: entry.rowKey,
  oid: entry.oid,
  size: entry.size,
  // a manifest written by an older version may hold a content type no HTTP stack sends
  contentType: ContentType.headerSafe(entry.contentType).value,
  expectedSha1: entry.sha1 === "" ? undefined : entry.sha1
})

const removeStaged = (path: string) => Effect.promise(() => NodeFs.rm(path, { force: true }))

export interface UploadOptions {
  /** runs the upload with its progress shown (TaskProgress): lines settled of the manifest's */
  readonly watch?: Watch | undefined
  /** count the manifest's lines first (one more read of it), so that the progress has a total (default true) */
  readonly count?: boolean | undefined
  /** told of each failed line as it fails (the summary lists the first ones) */
  readonly onFailure?: ((failure: RowFailure) => Effect.Effect<void>) | undefined
}

export const run = (settings: Settings, manifest: string, options: UploadOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const source = yield* CopySource
    const store = yield* ObjectStore
    const stats = yield* Stats
    const failures = yield* Failures

    // the local file first: a wrong or missing manifest is a usage problem (exit 2), found before any work
    yield* Manifest.checkHeader(manifest)
    yield* checkConnection(describeUrl(settings.pgUrl))
    // one run at a time per table, migrate and upload-blobs alike; were the lock lost to another run,
    // both would only repeat idempotent work (same keys, same sha2), so this one goes on and says so
    yield* RunLock.acquire((yield* source.runKey).lock, {
      shown: source.table,
      onLost: Effect.logWarning(`another lo-migrate run took the lock of ${source.table}; this upload goes on`)
    })
    yield* source.prepare
    yield* store.probe
    if (options.onFailure !== undefined) yield* failures.listen(options.onFailure)

    const started = Date.now()
    let alreadyDone = 0
    // the manifest's lines, counted before the upload; each line settles once: uploaded and marked,
    // already done, or failed
    const total = options.count === false ? undefined : yield* Manifest.totals(manifest)
    const settled = { lines: 0, bytes: 0, complete: false }
    const settle = (size: number) =>
      Effect.sync(() => {
        settled.lines++
        settled.bytes += size
      })
    const done = (p: Pending) => Effect.andThen(settle(p.entry.size), Effect.sync(() => void alreadyDone++))
    const failLine = (p: Pending, reason: RowFailure["reason"], detail: string) =>
      Effect.andThen(settle(p.entry.size), failures.record(lineFailure(p, reason, detail)))
    const toUpload = yield* Stage.channel<Pending>(settings.storerQueue)
    const toCommit = yield* Stage.channel<Uploaded>(settings.committerQueue)

    const check = (batch: ReadonlyArray<Pending>) =>
      Effect.gen(function*() {
        if (batch.length === 0) return
        const recorded = yield* source.recorded(batch.map((p) => p.entry.rowKey))
        for (const p of batch) {
          const r = recorded.get(p.entry.rowKey)
          if (r === undefined) {
            yield* failLine(p, "row-vanished",
              `row ${p.entry.rowKey} does not exist in ${source.table} (deleted since staging, or the manifest was staged ` +
                `with other --profile/--table flags); staged file ${p.entry.stagedPath} kept`)
          } else if (r._tag === "NotAKey") {
            yield* failLine(p, "manifest-mismatch",
              `row key ${p.entry.rowKey} does not fit ${source.table}: ${r.problem} (was the manifest staged with other ` +
                `--profile/--table flags?); staged file ${p.entry.stagedPath} kept`)
          } else if (Recorded.matches(r, p.entry)) {
            yield* done(p)
            yield* removeStaged(p.entry.stagedPath)
          } else if (Recorded.isMigrated(r)) {
            yield* done(p)
            yield* Effect.logWarning(
              `manifest line ${p.line}: row ${p.entry.rowKey} is already migrated with ${Recorded.describe(r)}, not this line's ` +
                `(SHA-256 ${p.entry.sha256}, S3 key ${p.entry.s3Key}); staged file ${p.entry.stagedPath} kept`
            )
          } else {
            // the object goes where the staging run's flags put it; other flags now (--key-template,
            // --s3-prefix) would record a key that verify, run with them, does not look for
            const expected = source.objectKey(candidateOf(p.entry), p.entry.sha256)
            if (expected !== p.entry.s3Key) {
              yield* failLine(p, "manifest-mismatch",
                `its S3 key ${p.entry.s3Key} is not the one these settings give (${expected}): run upload-blobs with the ` +
                  `--key-template/--s3-prefix of the staging run; staged file ${p.entry.stagedPath} kept`)
            } else {
              yield* Stage.emit(toUpload, p)
            }
          }
        }
      })

    const reader = Effect.gen(function*() {
      let batch: Array<Pending> = []
      yield* Manifest.forEachLine(manifest, (line) =>
        Effect.gen(function*() {
          if (typeof line.entry === "string") {
            yield* settle(0)
            return yield* failures.record({
              key: `manifest line ${line.number}`,
              oid: null,
              reason: "manifest-line-malformed",
              detail: `manifest line ${line.number} ${line.entry}`
            })
          }
          batch.push({ line: line.number, entry: line.entry })
          if (batch.length >= checkBatch) {
            const full = batch
            batch = []
            yield* check(full)
          }
        }))
      yield* check(batch)
    }).pipe(
      Effect.catchTag("Done", () => Effect.void),
      Effect.ensuring(Queue.end(toUpload))
    )

    const uploaders = Stage.run({
      name: "uploaders",
      workers: settings.storerThreads,
      take: Queue.take(toUpload),
      input: toUpload,
      output: toCommit,
      step: (p) =>
        Effect.gen(function*() {
          const path = p.entry.stagedPath
          const opened = yield* Effect.result(Effect.acquireRelease(
            Effect.tryPromise({ try: () => NodeFs.open(path, "r"), catch: (cause) => cause as { readonly code?: string } }),
            (h) => Effect.promise(() => h.close())
          ))
          if (Result.isFailure(opened)) {
            const missing = opened.failure.code === "ENOENT"
            // another line for the same row (two staging runs at once) may have finished it meanwhile
            const now = missing ? (yield* source.recorded([p.entry.rowKey])).get(p.entry.rowKey) : undefined
            if (now !== undefined && Recorded.matches(now, p.entry)) return yield* done(p)
            return yield* failLine(p, missing ? "staged-file-missing" : "staged-file-corrupt",
              missing ? `staged file ${path} is missing` : `staged file ${path} cannot be read: ${describeCause(opened.failure)}`)
          }
          const file = opened.success
          // the bytes must be those staged: verified before they go anywhere
          const sha256 = createHash("sha256")
          const md5 = createHash("md5")
          const size = yield* Effect.tryPromise({
            try: async () => {
              // sized to the object (plus one byte to see the end), not 8 MiB for every small file
              const length = Math.max(1, Math.min(readChunk, p.entry.size + 1))
              const buffer = Buffer.allocUnsafe(length)
              let offset = 0
              while (true) {
                const { bytesRead } = await file.read(buffer, 0, length, offset)
                if (bytesRead === 0) return offset
                sha256.update(buffer.subarray(0, bytesRead))
                md5.update(buffer.subarray(0, bytesRead))
                offset += bytesRead
              }
            },
            catch: (cause) => new PayloadFailure({ path, cause })
          })
          const digest = sha256.digest("hex")
          if (size !== p.entry.size || digest !== p.entry.sha256) {
            return yield* failLine(p, "staged-file-corrupt",
              `staged file ${path} has ${size} bytes with SHA-256 ${digest}, the line says ${p.entry.size} bytes with ${p.entry.sha256}`)
          }
          // the handle is closed by this scope, not by the payload
          const payload = Payload.fromFile({ path, handle: file, size, release: Effect.void })
          const type = ContentType.forRow(p.entry.rowKey, p.entry.contentType)
          if (type.warning !== undefined) yield* Effect.logWarning(`manifest line ${p.line}: ${type.warning}`)
          yield* store.put({
            key: p.entry.s3Key,
            rowKey: p.entry.rowKey,
            payload,
            contentType: type.contentType,
            md5: md5.digest("base64"),
            sha256: digest,
            metadata: {
              sha256: digest,
              ...(p.entry.sha1 === "" ? {} : { sha1: p.entry.sha1 }),
              ...(p.entry.oid === null ? {} : { oid: String(p.entry.oid) })
            }
          })
          yield* stats.processed("storer", size)
          yield* Stage.emit(toCommit, {
            line: p.line,
            path,
            stored: { candidate: { ...candidateOf(p.entry), size }, sha256: digest, key: p.entry.s3Key }
          })
        }).pipe(Effect.scoped)
    })

    const refusals: Pipeline.RefusalStreak = { count: 0 }
    const committers = Stage.run({
      name: "committers",
      workers: settings.committerThreads,
      take: Stage.takeChunk(toCommit, settings.commitChunk, Pipeline.commitIdle),
      input: toCommit,
      step: (chunk) =>
        Pipeline.commit(chunk, {
          stored: (u) => u.stored,
          vanished: (u) => `manifest line ${u.line}: the row was deleted or changed since staging; its object ${u.stored.key} is in S3, staged file ${u.path} kept`,
          // only now, with the row marked, is the staged copy no longer needed
          marked: (u) => Effect.andThen(settle(u.stored.candidate.size), removeStaged(u.path)),
          // a row not marked (vanished, changed) settles its line too
          failures: {
            ...failures,
            record: (failure) =>
              Effect.andThen(
                settle(chunk.find((u) => u.stored.candidate.key === failure.key)?.stored.candidate.size ?? 0),
                failures.record(failure)
              )
          },
          refusals
        })
    })

    const state = Effect.map(stats.snapshot, (now): TaskState => ({
      done: settled.lines,
      bytes: settled.bytes,
      total: total?.lines,
      totalBytes: total?.bytes,
      complete: settled.complete,
      failed: now.failed,
      detail: `${now.processed.committer} uploaded and marked, ${alreadyDone} already done, ${now.failed} failed, ${now.retries} retries`,
      fields: { uploaded: now.processed.committer, alreadyDone, retries: now.retries }
    }))
    const upload = Effect.gen(function*() {
      const exits = yield* Effect.all(
        [Effect.exit(reader), Effect.exit(uploaders), Effect.exit(committers)],
        { concurrency: "unbounded" }
      )
      for (const exit of exits as ReadonlyArray<Exit.Exit<void, DatabaseError | PayloadError | StoreError | ManifestError>>) {
        if (exit._tag === "Failure") return yield* Effect.failCause(exit.cause)
      }
      settled.complete = true
    })
    yield* (options.watch === undefined ? upload : options.watch(state, upload))

    const end = yield* stats.snapshot
    return {
      uploaded: end.processed.committer,
      bytes: end.bytes.committed,
      alreadyDone,
      failed: end.failed,
      failures: yield* failures.list,
      durationMs: Date.now() - started
    } satisfies UploadSummary
  }))
