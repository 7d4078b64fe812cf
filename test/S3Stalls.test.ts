// A stalled S3 request never hangs the run: every request has deadlines that really abort it (idle
// socket, which bounds the first byte too; a whole-request bound that grows with the body), and a
// request that hits one is retried like a broken connection. Before, a PUT the server took and never
// answered hung the run for ever (the SDK's requestTimeout only logs a warning).
// Real executable, real PostgreSQL, s3rver behind a proxy that stalls.
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Layer } from "effect"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { endsWithin } from "./support/RunControl.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, assertNothingMarked } from "./support/Verify.ts"

const MiB = 1024 * 1024
const env = FaultProxy.layerWith({ seed: 5 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const singlePut = /\/[0-9a-f]{64}(\?x-id=PutObject)?$/
const part = /\/[0-9a-f]{64}\?partNumber=/

const data = Effect.gen(function*() {
  yield* createNice2Schema()
  const objects: Array<InsertedObject> = []
  objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB + 7, 1) }))
  for (let i = 0; i < 6; i++) objects.push(yield* insertObject({ bytes: randomBytes(900 + i, 10 + i) }))
  return objects
})

/** A run with 2-second S3 bounds, which must end within `bound`. */
const migrate = (bound: Duration.Input, retries = 4) =>
  Effect.gen(function*() {
    const proxy = yield* FaultProxy
    return yield* endsWithin(
      bound,
      runCli([
        "migrate", ...(yield* targetVia(proxy.endpoint)),
        "--upload-chunk-size", "5120", "--retries", String(retries), "--s3-timeout", "2", "--storer-threads", "2"
      ])
    )
  })

describe("a stalled S3 request is aborted and retried", () => {
  it.live("a PUT the server takes and never answers: aborted after --s3-timeout, put again, finished", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "stall", method: "PUT", path: singlePut, count: 2, fault: { kind: "stall" } }])
      const result = yield* migrate("40 seconds")
      assert.strictEqual(yield* proxy.fired("stall"), 2)
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
      // the SDK's own timeout warnings never reach the console
      assert.notInclude(result.stderr, "requestTimeout")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a part whose body the server stops reading: the idle bound aborts it, the part is sent again", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "stall", method: "PUT", path: part, count: 1, fault: { kind: "stallUpload" } }])
      const result = yield* migrate("40 seconds")
      assert.strictEqual(yield* proxy.fired("stall"), 1)
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("an answer that trickles in a byte at a time (never idle): the whole-request bound aborts it", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      // 1,000 bytes at one per 100 ms would take 100 s; the bound for a small PUT is 2 x 2 s
      yield* proxy.setRules([{ name: "drip", method: "PUT", path: singlePut, count: 1, fault: { kind: "drip", intervalMs: 100, padding: 1000 } }])
      const result = yield* migrate("40 seconds")
      assert.strictEqual(yield* proxy.fired("drip"), 1)
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("S3 that stalls for good: the run ends after the retry budget (exit 1), naming the call; nothing marked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* data
      yield* proxy.setRules([{ name: "stall", method: "PUT", path: /\/[0-9a-f]{64}/, fault: { kind: "stall" } }])
      const result = yield* migrate("60 seconds", 3)
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: S3 (PutObject|UploadPart) [0-9a-f]{64}.* failed: .*(timed out|TimeoutError)/)
      yield* assertNothingMarked
      yield* assertMarkedRowsBacked
    }).pipe(Effect.scoped, Effect.provide(env)))
})
