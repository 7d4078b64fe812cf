/**
 * Receiving a batch of candidates at once. Small objects (up to `smallMax` bytes, kept in memory) are
 * read many per statement (`LargeObjects.readMany`): one round trip and one retry wrapper for up to
 * `batchCount` objects instead of one each, which is most of a receiver's cost on small objects.
 * Everything else goes through the one-object path (`Receiver.receive`), and so does any object the
 * batch cannot settle: a batch that fails on one object's problem (SQLSTATE 42704: some oid names no
 * large object; 42501: the role may not read one; a corrupt one) is read again one by one, so each such
 * object is reported on its own and the others go on; an object
 * whose length differs from the row's claim is read again alone, so its failure states the real size.
 */
import { Effect, Result } from "effect"
import type { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { DatabaseError, type PayloadError } from "../domain/Errors.ts"
import type { Candidate, Received, RowFailure } from "../domain/LargeObject.ts"
import * as LargeObjects from "../postgres/LargeObjects.ts"
import { isRetryableSql } from "../postgres/Statement.ts"
import type { MemoryBudget } from "../core/MemoryBudget.ts"
import * as Payload from "../core/Payload.ts"
import * as Receiver from "./Receiver.ts"
import { retrying } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"

/** Objects per batched statement. */
export const batchCount = 256
/** Claimed bytes per batched statement: bounds the statement's result and the budget it takes at once. */
export const batchBytes = 4 * 1024 * 1024

export interface BatchReadOptions extends Receiver.ReceiverOptions {
  readonly budget: MemoryBudget
}

type Outcome = Result.Result<Received, RowFailure>

/**
 * Receives every candidate and hands each outcome to `deliver` (a batch's outcomes after its statement,
 * the others as they are read).
 */
export const receiveAll = <E, R>(
  candidates: ReadonlyArray<Candidate>,
  options: BatchReadOptions,
  deliver: (outcome: Outcome) => Effect.Effect<void, E, R>
): Effect.Effect<void, E | DatabaseError | PayloadError, R | SqlClient.SqlClient | Stats> =>
  Effect.gen(function*() {
    const limit = Math.min(batchBytes, options.budget.bytes)
    const smallMax = Math.min(options.inMemMax, limit)
    const batches: Array<Array<Candidate>> = []
    let current: Array<Candidate> = []
    let bytes = 0
    const one = (candidate: Candidate) => Effect.flatMap(Receiver.receive(candidate, options), deliver)
    for (const candidate of candidates) {
      // a blob made of several large objects (RelStorage chunks) is read chunk by chunk, on its own
      if (candidate.oid === null || candidate.sizeUnknown === true || candidate.size > smallMax || (candidate.oids?.length ?? 1) > 1) {
        yield* one(candidate)
        continue
      }
      if (current.length >= batchCount || bytes + candidate.size > limit) {
        batches.push(current)
        current = []
        bytes = 0
      }
      current.push(candidate)
      bytes += candidate.size
    }
    if (current.length > 0) batches.push(current)
    for (const batch of batches) {
      if (batch.length === 1) yield* one(batch[0]!)
      else yield* readBatch(batch, options, one, deliver)
    }
  })

const readBatch = <E, R>(
  batch: ReadonlyArray<Candidate>,
  options: BatchReadOptions,
  one: (candidate: Candidate) => Effect.Effect<void, E | DatabaseError | PayloadError, R | SqlClient.SqlClient | Stats>,
  deliver: (outcome: Outcome) => Effect.Effect<void, E, R>
) =>
  Effect.gen(function*() {
    const { budget } = options
    // The whole batch's bytes are taken before the statement buffers them; each payload gives its own
    // share back when the storer is done with it, the rest is given back here.
    const taken = yield* budget.take(batch.reduce((n, c) => n + c.size, 0))
    let held = taken
    const giveBack = (n: number) =>
      Effect.suspend(() => {
        const amount = Math.min(n, held)
        held -= amount
        return budget.release(amount)
      })
    const giveBackRest = Effect.suspend(() => giveBack(held))
    const read = yield* retrying(
      LargeObjects.readMany(batch.map((c) => ({ oid: c.oid!, cap: c.size + 1 }))),
      { policy: options.retry, isRetryable: isRetryableSql, what: `read ${batch.length} large objects` }
    ).pipe(
      Effect.map((chunks) => (chunks.length === batch.length ? chunks : undefined)),
      // one object's problem (missing, not readable by this role, corrupt) fails the whole statement:
      // read the batch one by one, so that row alone fails and the others go on
      Effect.catchTag("SqlError", (error) =>
        LargeObjects.isPerObject(error)
          ? Effect.succeed(undefined)
          : Effect.fail(new DatabaseError({ operation: `read ${batch.length} large objects`, cause: error }))),
      Effect.onError(() => giveBackRest)
    )
    if (read === undefined) {
      // some object cannot be read: find out which, one by one
      yield* giveBackRest
      for (const candidate of batch) yield* one(candidate)
      return
    }
    yield* deliverAll(batch, read, options, one, deliver, {
      share: (size) => {
        const share = Math.min(size, held)
        held -= share
        return share
      }
    }).pipe(Effect.ensuring(giveBackRest))
  })

const deliverAll = <E, R>(
  batch: ReadonlyArray<Candidate>,
  read: ReadonlyArray<Uint8Array>,
  options: BatchReadOptions,
  one: (candidate: Candidate) => Effect.Effect<void, E | DatabaseError | PayloadError, R | SqlClient.SqlClient | Stats>,
  deliver: (outcome: Outcome) => Effect.Effect<void, E, R>,
  held: { readonly share: (size: number) => number }
) =>
  Effect.gen(function*() {
    const { budget } = options
    for (let i = 0; i < batch.length; i++) {
      const candidate = batch[i]!
      const bytes = read[i]!
      // this object's share of the batch's bytes: handed to its payload, or given back at once
      const share = held.share(candidate.size)
      if (bytes.length !== candidate.size) {
        yield* budget.release(share)
        yield* one(candidate)
        continue
      }
      const sha1 = createHash("sha1").update(bytes).digest("hex")
      if (candidate.expectedSha1 !== undefined && sha1 !== candidate.expectedSha1) {
        yield* budget.release(share)
        yield* deliver(Result.fail({
          key: candidate.key,
          oid: candidate.oid,
          reason: "sha1-mismatch",
          detail: `the content's SHA-1 is ${sha1}`
        }))
        continue
      }
      const payload = yield* Payload.fromBytes(bytes, options.runScope, budget.release(share))
      yield* deliver(Result.succeed({
        candidate,
        digests: {
          sha1,
          sha256: createHash("sha256").update(bytes).digest("hex"),
          md5: createHash("md5").update(bytes).digest("base64")
        },
        payload
      }))
    }
  })
