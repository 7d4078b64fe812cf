/**
 * A receiver reads one large object, hashes it (SHA-1, SHA-256 and MD5 in the same pass), checks size
 * and SHA-1 against the row, and stages the bytes as a Payload for the storers.
 */
import { Effect, Result, type Scope } from "effect"
import { createHash } from "node:crypto"
import type { SqlClient } from "effect/sql"
import { DatabaseError, type PayloadError } from "../domain/Errors.ts"
import type { Candidate, Received, RowFailure } from "../domain/LargeObject.ts"
import * as LargeObjects from "../source/LargeObjects.ts"
import { isRetryableSql } from "../source/Source.ts"
import type { MemoryBudget } from "./MemoryBudget.ts"
import * as Payload from "./Payload.ts"
import { retrying, type RetryPolicy } from "./Retry.ts"
import type { Stats } from "./Stats.ts"

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
}

const failure = (candidate: Candidate, reason: RowFailure["reason"], detail: string) =>
  Result.fail<RowFailure>({ key: candidate.key, oid: candidate.oid, reason, detail })

export const receive = (
  candidate: Candidate,
  options: ReceiverOptions
): Effect.Effect<Result.Result<Received, RowFailure>, DatabaseError | PayloadError, SqlClient.SqlClient | Stats> => {
  const oid = candidate.oid
  if (oid === null) return Effect.succeed(failure(candidate, "null-data", "data is NULL"))

  const attempt = Effect.gen(function*() {
    const writer = yield* Payload.open({
      expectedSize: candidate.size,
      inMemMax: options.inMemMax,
      tempDir: options.tempDir,
      parent: options.runScope,
      budget: options.budget
    })
    const sha1 = createHash("sha1")
    const sha256 = createHash("sha256")
    const md5 = createHash("md5")
    return yield* Effect.gen(function*() {
      const onChunk = (chunk: Uint8Array) =>
        Effect.andThen(
          Effect.sync(() => {
            sha1.update(chunk)
            sha256.update(chunk)
            md5.update(chunk)
          }),
          writer.write(chunk)
        )
      // several large objects (RelStorage's chunks) are one object: read in order, streamed
      let size = 0
      for (const part of candidate.oids ?? [oid]) size += yield* LargeObjects.read(part, onChunk, options.readChunkSize)
      const payload = yield* writer.seal
      return { payload, size, sha1: sha1.digest("hex"), sha256: sha256.digest("hex"), md5: md5.digest("base64") }
    }).pipe(Effect.onError(() => writer.release))
  })

  return retrying(attempt, {
    policy: options.retry,
    isRetryable: (e) => e._tag === "SqlError" && isRetryableSql(e),
    what: `read large object ${oid}`
  }).pipe(
    Effect.flatMap((read): Effect.Effect<Result.Result<Received, RowFailure>> => {
      const reject = (reason: RowFailure["reason"], detail: string) =>
        Effect.as(read.payload.release, failure(candidate, reason, detail))
      if (read.size !== candidate.size) {
        return reject("size-mismatch", `the row says ${candidate.size} bytes, the large object has ${read.size}`)
      }
      if (candidate.expectedSha1 !== undefined && read.sha1 !== candidate.expectedSha1) {
        return reject("sha1-mismatch", `the content's SHA-1 is ${read.sha1}`)
      }
      return Effect.succeed(Result.succeed({
        candidate,
        digests: { sha1: read.sha1, sha256: read.sha256, md5: read.md5 },
        payload: read.payload
      }))
    }),
    Effect.catchTag("SqlError", (error) =>
      LargeObjects.sqlState(error) === LargeObjects.undefinedObject
        ? Effect.succeed(failure(candidate, "missing-object", `large object ${oid} does not exist`))
        : LargeObjects.sqlState(error) === LargeObjects.insufficientPrivilege
        // one object the role may not read is that row's problem, not the run's (grant and rerun)
        ? Effect.succeed(failure(candidate, "permission-denied", `this role may not read large object ${oid} (GRANT SELECT ON LARGE OBJECT ${oid})`))
        : Effect.fail(new DatabaseError({ operation: `read large object ${oid}`, cause: error })))
  )
}
