// The S3 request limit: halves on SlowDown (once per cooldown), never below the minimum, and grows back
// by one after `limit` successes in a row, up to the maximum. TestClock drives the cooldown.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import * as AdaptiveLimit from "../src/s3/AdaptiveLimit.ts"

describe("AdaptiveLimit", () => {
  it.effect("halves on SlowDown once per cooldown, recovers additively after successes", () =>
    Effect.gen(function*() {
      const changes: Array<[number, string]> = []
      const limit = yield* AdaptiveLimit.make({
        max: 16,
        cooldownMillis: 1000,
        onChange: (n, reason) => Effect.sync(() => changes.push([n, reason]))
      })
      assert.strictEqual(yield* limit.current, 16)
      yield* limit.slowDown
      yield* limit.slowDown // same burst: no second decrease within the cooldown
      assert.strictEqual(yield* limit.current, 8)
      yield* TestClock.adjust("1001 millis")
      yield* limit.slowDown
      assert.strictEqual(yield* limit.current, 4)
      // 4 successes at limit 4 -> 5; 5 more -> 6
      for (let i = 0; i < 9; i++) yield* limit.withPermit(Effect.void)
      assert.strictEqual(yield* limit.current, 6)
      for (let i = 0; i < 1000; i++) yield* limit.withPermit(Effect.void)
      assert.strictEqual(yield* limit.current, 16, "back to the maximum, not above")
      assert.deepStrictEqual(changes.slice(0, 4), [[8, "slow-down"], [4, "slow-down"], [5, "recover"], [6, "recover"]])
    }))

  it.effect("halves what is on the wire, not a ceiling far above it", () =>
    Effect.gen(function*() {
      const limit = yield* AdaptiveLimit.make({ max: 256, cooldownMillis: 0 })
      // 20 requests at once, far below the ceiling of 256
      const fiber = yield* Effect.forkChild(Effect.all(Array.from({ length: 20 }, () => limit.withPermit(Effect.sleep("10 millis"))), { concurrency: "unbounded" }))
      yield* TestClock.adjust("20 millis")
      yield* Fiber.join(fiber)
      yield* limit.slowDown
      assert.strictEqual(yield* limit.current, 10, "half of the 20 in flight, at once")
    }))

  it.effect("never below the minimum; a failed request does not count as a success", () =>
    Effect.gen(function*() {
      const limit = yield* AdaptiveLimit.make({ max: 4, cooldownMillis: 0 })
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust("1 millis")
        yield* limit.slowDown
      }
      assert.strictEqual(yield* limit.current, 1)
      yield* limit.withPermit(Effect.fail("boom")).pipe(Effect.ignore)
      yield* limit.withPermit(Effect.fail("boom")).pipe(Effect.ignore)
      assert.strictEqual(yield* limit.current, 1)
    }))

  it.effect("holds requests beyond the limit until one finishes", () =>
    Effect.gen(function*() {
      const limit = yield* AdaptiveLimit.make({ max: 2 })
      let running = 0
      let peak = 0
      const request = limit.withPermit(Effect.gen(function*() {
        running++
        peak = Math.max(peak, running)
        yield* Effect.sleep("10 millis")
        running--
      }))
      const fiber = yield* Effect.forkChild(Effect.all([request, request, request, request, request], { concurrency: "unbounded" }))
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(fiber)
      assert.strictEqual(peak, 2)
    }))

  it.effect("recognizes S3's ways of saying slow down", () =>
    Effect.sync(() => {
      assert.isTrue(AdaptiveLimit.isSlowDown({ name: "SlowDown", $metadata: { httpStatusCode: 503 } }))
      assert.isTrue(AdaptiveLimit.isSlowDown({ name: "Whatever", $metadata: { httpStatusCode: 429 } }))
      assert.isTrue(AdaptiveLimit.isSlowDown({ name: "ThrottlingException" }))
      assert.isFalse(AdaptiveLimit.isSlowDown({ name: "InternalError", $metadata: { httpStatusCode: 500 } }))
      assert.isFalse(AdaptiveLimit.isSlowDown(undefined))
    }))
})
