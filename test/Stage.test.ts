// The generic stage: a fiber pool over bounded queues, with close-and-drain shutdown and the failure
// cascade (downstream still drains, upstream stops), and commit chunking with an idle flush.
import { assert, describe, it } from "@effect/vitest"
import { Cause, Data, Effect, Exit, Fiber, Queue } from "effect"
import { TestClock } from "effect/testing"
import * as Stage from "../src/pipeline/Stage.ts"

class Boom extends Data.TaggedError("Boom")<{ readonly at: number }> {}

describe("Stage.run", () => {
  it.effect("moves every item through, then ends the output queue", () =>
    Effect.gen(function*() {
      const input = yield* Stage.channel<number>(4)
      const output = yield* Stage.channel<number>(4)
      const producer = Effect.forEach(Array.from({ length: 50 }, (_, i) => i), (i) => Queue.offer(input, i)).pipe(
        Effect.andThen(Queue.end(input))
      )
      const doubler = Stage.run({
        name: "double",
        workers: 3,
        take: Queue.take(input),
        input,
        output,
        step: (i) => Stage.emit(output, i * 2)
      })
      const results: Array<number> = []
      const sink = Effect.forever(Effect.flatMap(Queue.take(output), (n) => Effect.sync(() => results.push(n)))).pipe(
        Effect.catchTag("Done", () => Effect.void)
      )
      yield* Effect.all([producer, doubler, sink], { concurrency: "unbounded" })
      assert.deepStrictEqual(results.sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i * 2))
    }))

  it.effect("a failing stage still ends its output (downstream drains) and shuts its input (upstream stops)", () =>
    Effect.gen(function*() {
      const input = yield* Stage.channel<number>(2)
      const output = yield* Stage.channel<number>(100)
      let produced = 0
      const producer = Effect.gen(function*() {
        for (let i = 0; i < 1000; i++) {
          const accepted = yield* Queue.offer(input, i)
          if (!accepted) return "stopped" as const
          produced++
        }
        return "finished" as const
      })
      const stage = Stage.run({
        name: "fails",
        workers: 1,
        take: Queue.take(input),
        input,
        output,
        step: (i) => (i === 10 ? Effect.fail(new Boom({ at: i })) : Stage.emit(output, i))
      })
      const [producerResult, stageExit] = yield* Effect.all([producer, Effect.exit(stage)], { concurrency: "unbounded" })
      assert.strictEqual(producerResult, "stopped")
      assert.isBelow(produced, 1000)
      assert.isTrue(Exit.isFailure(stageExit))
      const drained = yield* Queue.collect(output)
      assert.deepStrictEqual(drained, Array.from({ length: 10 }, (_, i) => i))
    }))

  it.effect("emit fails with Done once the next stage has shut its input down", () =>
    Effect.gen(function*() {
      const q = yield* Stage.channel<number>(1)
      yield* Queue.shutdown(q)
      const exit = yield* Effect.exit(Stage.emit(q, 1))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasFails(exit.cause))
    }))
})

describe("Stage.takeChunk", () => {
  it.effect("takes full chunks while items are there, and the rest once the queue ends", () =>
    Effect.gen(function*() {
      const q = yield* Stage.channel<number>(100)
      yield* Queue.offerAll(q, Array.from({ length: 12 }, (_, i) => i))
      yield* Queue.end(q)
      const first = yield* Stage.takeChunk(q, 10, "1 second")
      const second = yield* Stage.takeChunk(q, 10, "1 second")
      const third = yield* Effect.exit(Stage.takeChunk(q, 10, "1 second"))
      assert.deepStrictEqual(first, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
      assert.deepStrictEqual(second, [10, 11])
      assert.isTrue(Exit.isFailure(third), "Done after the last item")
    }))

  it.effect("flushes a partial chunk once no item has come for the idle time", () =>
    Effect.gen(function*() {
      const q = yield* Stage.channel<number>(100)
      yield* Queue.offerAll(q, [1, 2, 3])
      const fiber = yield* Effect.forkChild(Stage.takeChunk(q, 10, "500 millis"))
      yield* TestClock.adjust("400 millis")
      yield* Queue.offer(q, 4) // arrives within the idle window: joins the chunk
      yield* TestClock.adjust("400 millis")
      assert.isUndefined(fiber.pollUnsafe(), "still gathering: the idle time restarts with each arrival")
      yield* TestClock.adjust("200 millis")
      assert.deepStrictEqual(yield* Fiber.join(fiber), [1, 2, 3, 4])
    }))
})
