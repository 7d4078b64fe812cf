/**
 * A receiver reads one large object, hashes it (SHA-1, SHA-256 and MD5 in the same pass), checks size
 * and SHA-1 against the row, and stages the bytes as a Payload for the storers.
 */
import { Effect, Result, type Scope } from "effect"
import { createHash } from "node:crypto"
import type { SqlClient, SqlError } from "effect/sql"
import { DatabaseError, describeCause, type PayloadError } from "../domain/Errors.ts"
import type { Candidate, Received, RowFailure } from "../domain/LargeObject.ts"
import * as LargeObjects from "../postgres/LargeObjects.ts"
import { isRetryableSql } from "../postgres/Statement.ts"
import type { MemoryBudget } from "../core/MemoryBudget.ts"
import * as Payload from "../core/Payload.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"

export interface ReceiverOptions {
  readonly inMemMax: number
  /** bytes per `lo_get` */
  readonly readChunkSize: number
  readonly tempDir: string
  readonly retry: RetryPolicy
  /** payloads are children of this scope, so the run's end releases any still open */
  readonly runScope: Scope.Scope
  /** in-memory payloads hold their size of this budget until the storer is done */
  readonly budget?: MemoryBudget | undefined
  /**
   * the S3 part size: an object larger than one part gets the MD5 of each part instead of the whole
   * object's (one MD5 pass either way, and no second pass over the temp file before each part)
   */
  readonly partSize?: number | undefined
}

/** MD5s of consecutive parts of `partSize` bytes, fed with chunks of any size. */
const partHasher = (partSize: number) => {
  const md5s: Array<string> = []
  let current = createHash("md5")
  let filled = 0
  return {
    update: (chunk: Uint8Array) => {
      let at = 0
      while (at < chunk.length) {
        const take = Math.min(partSize - filled, chunk.length - at)
        current.update(at === 0 && take === chunk.length ? chunk : chunk.subarray(at, at + take))
        filled += take
        at += take
        if (filled === partSize) {
          md5s.push(current.digest("base64"))
          current = createHash("md5")
          filled = 0
        }
      }
    },
    digest: (): ReadonlyArray<string> => (filled > 0 ? [...md5s, current.digest("base64")] : md5s)
  }
}

const failure = (candidate: Candidate, reason: RowFailure["reason"], detail: string) =>
  Result.fail<RowFailure>({ key: candidate.key, oid: candidate.oid, reason, detail })

export const receive = (
  candidate: Candidate,
  options: ReceiverOptions
): Effect.Effect<Result.Result<Received, RowFailure>, DatabaseError | PayloadError, SqlClient.SqlClient | Stats> => {
  const oid = candidate.oid
  if (oid === null) return Effect.succeed(failure(candidate, "null-data", "data is NULL"))

  // A row that claims a size is read up to one byte past it: the extra byte proves a mismatch without
  // buffering what the row did not announce (the memory budget and the memory/file choice trust the
  // claim). A row without a size goes to a temp file and is read whole.
  const unknown = candidate.sizeUnknown === true
  const cap = unknown ? Number.POSITIVE_INFINITY : candidate.size + 1
  const attempt = Effect.gen(function*() {
    const writer = yield* Payload.open({
      expectedSize: unknown ? Number.POSITIVE_INFINITY : candidate.size,
      inMemMax: options.inMemMax,
      tempDir: options.tempDir,
      parent: options.runScope,
      budget: options.budget
    })
    const sha1 = createHash("sha1")
    const sha256 = createHash("sha256")
    const partSize = options.partSize
    // in parts when it will go in parts; both when the size is not known before the end
    const inParts = partSize !== undefined && (unknown || candidate.size > partSize) ? partHasher(partSize) : undefined
    const md5 = inParts === undefined || unknown ? createHash("md5") : undefined
    return yield* Effect.gen(function*() {
      const onChunk = (chunk: Uint8Array) =>
        Effect.andThen(
          Effect.sync(() => {
            sha1.update(chunk)
            sha256.update(chunk)
            md5?.update(chunk)
            inParts?.update(chunk)
          }),
          writer.write(chunk)
        )
      // several large objects (RelStorage's chunks) are one object: read in order, streamed
      let size = 0
      for (const part of candidate.oids ?? [oid]) {
        if (size >= cap) break
        size += yield* LargeObjects.read(part, onChunk, options.readChunkSize, cap - size)
      }
      const payload = yield* writer.seal
      const partMd5s = inParts === undefined || partSize === undefined || size <= partSize
        ? undefined
        : { partSize, md5s: inParts.digest() }
      return { payload, size, sha1: sha1.digest("hex"), sha256: sha256.digest("hex"), md5: md5?.digest("base64"), partMd5s }
    }).pipe(Effect.onError(() => writer.release))
  })

  const sql = (what: string) => ({
    policy: options.retry,
    isRetryable: (e: DatabaseError | PayloadError | SqlError.SqlError) => e._tag === "SqlError" && isRetryableSql(e),
    what
  })
  /** the real length, for the message only: the sum of the parts, or "more" when it cannot be read */
  const realLength = Effect.forEach(candidate.oids ?? [oid], LargeObjects.length).pipe(
    Effect.map((lengths) => `${lengths.reduce((a, b) => a + b, 0)} bytes`),
    Effect.catch(() => Effect.succeed(`more than ${candidate.size} bytes`))
  )

  return retrying(attempt, sql(`read large object ${oid}`)).pipe(
    Effect.flatMap((read): Effect.Effect<Result.Result<Received, RowFailure>, never, SqlClient.SqlClient> => {
      const reject = (reason: RowFailure["reason"], detail: string) =>
        Effect.as(read.payload.release, failure(candidate, reason, detail))
      if (!unknown && read.size !== candidate.size) {
        return read.size > candidate.size
          ? Effect.flatMap(read.payload.release.pipe(Effect.andThen(realLength)), (real) =>
            Effect.succeed(failure(candidate, "size-mismatch", `the row says ${candidate.size} bytes, the large object has ${real}`)))
          : reject("size-mismatch", `the row says ${candidate.size} bytes, the large object has ${read.size}`)
      }
      if (candidate.expectedSha1 !== undefined && read.sha1 !== candidate.expectedSha1) {
        return reject("sha1-mismatch", `the content's SHA-1 is ${read.sha1}`)
      }
      return Effect.succeed(Result.succeed({
        candidate,
        digests: { sha1: read.sha1, sha256: read.sha256, md5: read.md5, partMd5s: read.partMd5s },
        payload: read.payload
      }))
    }),
    Effect.catchTag("SqlError", (error) => Effect.suspend(() => {
      const state = LargeObjects.sqlState(error)
      if (state === LargeObjects.undefinedObject) {
        return Effect.succeed(failure(candidate, "missing-object", `large object ${oid} does not exist`))
      }
      // one object the role may not read is that row's problem, not the run's (grant and rerun)
      if (state === LargeObjects.insufficientPrivilege) {
        return Effect.succeed(failure(candidate, "permission-denied", `this role may not read large object ${oid} (GRANT SELECT ON LARGE OBJECT ${oid})`))
      }
      if (LargeObjects.isPerObject(error)) {
        return Effect.succeed(failure(candidate, "unreadable", `PostgreSQL cannot read large object ${oid}: ${describeCause(error)}`))
      }
      return Effect.fail(new DatabaseError({ operation: `read large object ${oid}`, cause: error }))
    }))
  )
}
