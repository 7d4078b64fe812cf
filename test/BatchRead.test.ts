// Batched reads of small objects (BatchRead.receiveAll) against the real test PostgreSQL: the bytes and
// digests of every object, per-object failures inside a batch, and the memory budget they hold.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Option, Result } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { tmpdir } from "node:os"
import type { Received, RowFailure } from "../src/domain/LargeObject.ts"
import * as BatchRead from "../src/migrate/BatchRead.ts"
import * as MemoryBudget from "../src/core/MemoryBudget.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"

const candidateOf = (o: InsertedObject) => ({
  key: o.hash,
  oid: o.oid,
  size: o.size,
  contentType: "application/octet-stream",
  expectedSha1: o.hash.toLowerCase()
})

const receive = (objects: ReadonlyArray<InsertedObject>, budget: MemoryBudget.MemoryBudget, inMemMax = 1024 * 1024) =>
  Effect.gen(function*() {
    const outcomes: Array<Result.Result<Received, RowFailure>> = []
    yield* BatchRead.receiveAll(objects.map(candidateOf), {
      inMemMax,
      readChunkSize: 2 * 1024 * 1024,
      tempDir: tmpdir(),
      retry: defaultPolicy(2),
      runScope: yield* Effect.scope,
      budget
    }, (outcome) => Effect.sync(() => outcomes.push(outcome)))
    return outcomes
  })

/** true when `bytes` of the budget can be taken within 200 ms (i.e. nobody holds them). */
const isFree = (budget: MemoryBudget.MemoryBudget, bytes: number) =>
  budget.take(bytes).pipe(
    Effect.timeoutOption("200 millis"),
    Effect.flatMap((taken) => (Option.isSome(taken) ? Effect.as(budget.release(taken.value), true) : Effect.succeed(false)))
  )

const env = Layer.mergeAll(TestDatabase.layerClient, Stats.layer)

describe("BatchRead", () => {
  it.live("reads many small objects per statement with their exact bytes and digests", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 300; i++) objects.push(yield* insertObject({ bytes: randomBytes(i * 7, 1000 + i) }))
      const budget = yield* MemoryBudget.make(64 * 1024 * 1024)
      const outcomes = yield* receive(objects, budget)
      assert.strictEqual(outcomes.length, objects.length)
      const byKey = new Map(outcomes.filter(Result.isSuccess).map((o) => [o.success.candidate.key, o.success]))
      for (const o of objects) {
        const got = byKey.get(o.hash)
        assert.isDefined(got, o.hash)
        const bytes = yield* got!.payload.read(0, got!.payload.size)
        assert.strictEqual(Buffer.compare(Buffer.from(bytes), Buffer.from(o.bytes!)), 0)
        assert.strictEqual(got!.digests.sha256, o.sha256)
        assert.strictEqual(got!.digests.md5, createHash("md5").update(o.bytes!).digest("base64"))
        yield* got!.payload.release
      }
      assert.isTrue(yield* isFree(budget, budget.bytes), "every payload gave its bytes back")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a missing object, a short one and a wrong SHA-1 in a batch fail alone; the rest are read", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const good1 = yield* insertObject({ bytes: randomBytes(100, 1) })
      const missing = yield* insertObject({ bytes: randomBytes(100, 2) })
      yield* sql`SELECT lo_unlink(${missing.oid})`
      const good2 = yield* insertObject({ bytes: randomBytes(100, 3) })
      const good3 = yield* insertObject({ bytes: randomBytes(100, 6) })
      const short = yield* insertObject({ bytes: randomBytes(100, 4), size: 101 })
      const wrong = yield* insertObject({ bytes: randomBytes(100, 5), hash: "ab".repeat(20) })
      const budget = yield* MemoryBudget.make(1024 * 1024)
      const outcomes = yield* receive([good1, missing, good2, short, wrong], budget)
      const failures = new Map(outcomes.filter(Result.isFailure).map((o) => [o.failure.key, o.failure]))
      assert.strictEqual(failures.get(missing.hash)?.reason, "missing-object")
      assert.strictEqual(failures.get(short.hash)?.reason, "size-mismatch")
      assert.include(failures.get(short.hash)?.detail ?? "", "has 100")
      assert.strictEqual(failures.get(wrong.hash)?.reason, "sha1-mismatch")
      const ok = outcomes.filter(Result.isSuccess).map((o) => o.success)
      assert.sameMembers(ok.map((r) => r.candidate.key), [good1.hash, good2.hash])
      for (const r of ok) yield* r.payload.release
      assert.isTrue(yield* isFree(budget, budget.bytes), "failed objects gave their bytes back too")

      // without the missing one, the same objects go through one batched statement
      const again = yield* receive([good1, good2, good3, short], budget)
      assert.strictEqual(again.filter(Result.isSuccess).length, 3)
      for (const o of again) if (Result.isSuccess(o)) yield* o.success.payload.release
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a receiver waits while the budget is used up, and goes on once a payload is released", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const a = yield* insertObject({ bytes: randomBytes(3000, 21) })
      const b = yield* insertObject({ bytes: randomBytes(3000, 22) })
      const budget = yield* MemoryBudget.make(4000)
      const [first] = yield* receive([a], budget)
      assert.isTrue(first !== undefined && Result.isSuccess(first))
      const second = yield* Effect.forkChild(receive([b], budget))
      yield* Effect.sleep("300 millis")
      assert.isUndefined(second.pollUnsafe(), "the second read waits for bytes")
      if (first !== undefined && Result.isSuccess(first)) yield* first.success.payload.release
      const exit = yield* Fiber.await(second)
      assert.isTrue(Exit.isSuccess(exit))
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("MemoryBudget", () => {
  it.live("an object larger than the whole budget takes all of it and still gets through", () =>
    Effect.gen(function*() {
      const budget = yield* MemoryBudget.make(100)
      const release = yield* budget.acquire(1_000)
      assert.isFalse(yield* isFree(budget, 1))
      yield* release
      yield* release // idempotent
      assert.strictEqual(yield* budget.take(100), 100)
      // lifted (the storers stopped): nobody waits any more
      yield* budget.lift
      assert.isTrue(yield* isFree(budget, 100))
    }))
})
