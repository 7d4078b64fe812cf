// Retries: exponential backoff with jitter under a cap, only for errors worth retrying, each counted.
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { retrying, type RetryPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"

class Flaky extends Data.TaggedError("Flaky")<{ readonly transient: boolean }> {}

const policy: RetryPolicy = { attempts: 4, base: "1 second", cap: "3 seconds" }

describe("Retry.retrying", () => {
  it.effect("retries transient failures with growing, capped delays, counting each retry", () =>
    Effect.gen(function*() {
      let calls = 0
      const task = Effect.suspend(() => ++calls < 4 ? Effect.fail(new Flaky({ transient: true })) : Effect.succeed(calls))
      const fiber = yield* Effect.forkChild(retrying(task, { policy, isRetryable: (e) => e.transient, what: "task" }))
      yield* TestClock.adjust("0 millis")
      assert.strictEqual(calls, 1)
      yield* TestClock.adjust("1200 millis") // 1 s ± 20 %
      assert.strictEqual(calls, 2)
      yield* TestClock.adjust("2400 millis") // 2 s ± 20 %
      assert.strictEqual(calls, 3)
      yield* TestClock.adjust("3600 millis") // 4 s capped at 3 s, ± 20 %
      assert.strictEqual(yield* Fiber.join(fiber), 4)
      assert.strictEqual((yield* (yield* Stats).snapshot).retries, 3)
    }).pipe(Effect.provide(Layer.fresh(Stats.layer))))

  it.effect("gives up after the policy's attempts with the last error", () =>
    Effect.gen(function*() {
      let calls = 0
      const task = Effect.suspend(() => (calls++, Effect.fail(new Flaky({ transient: true }))))
      const fiber = yield* Effect.forkChild(Effect.flip(retrying(task, { policy, isRetryable: (e) => e.transient, what: "task" })))
      yield* TestClock.adjust("1 minute")
      const error = yield* Fiber.join(fiber)
      assert.strictEqual(error._tag, "Flaky")
      assert.strictEqual(calls, 4)
    }).pipe(Effect.provide(Layer.fresh(Stats.layer))))

  it.effect("does not retry errors that retrying cannot fix", () =>
    Effect.gen(function*() {
      let calls = 0
      const task = Effect.suspend(() => (calls++, Effect.fail(new Flaky({ transient: false }))))
      const error = yield* Effect.flip(retrying(task, { policy, isRetryable: (e) => e.transient, what: "task" }))
      assert.isFalse(error.transient)
      assert.strictEqual(calls, 1)
      assert.strictEqual((yield* (yield* Stats).snapshot).retries, 0)
    }).pipe(Effect.provide(Layer.fresh(Stats.layer))))
})
