/**
 * A graceful stop: take no new object, finish what is in flight, commit what is stored, end.
 *
 * Once `stopping` turns true, the observer lists nothing more (Observer.ts) and this watcher empties the
 * receive queue and ends it, so receivers start no new read; objects already read but still waiting in
 * the store queue are dropped too (their memory or temp file is released: nothing was promised for
 * them). Reads and uploads in flight finish, their objects reach the committers, and the pipeline ends
 * through its usual close-and-drain path. Interrupting the run instead (a second signal) aborts uploads
 * in flight.
 */
import { Effect, Queue } from "effect"
import type { Received } from "../domain/LargeObject.ts"
import type { Channel } from "./Stage.ts"

/** How often the stop request is polled: short enough to be prompt, long enough to cost nothing. */
export const pollEvery = "100 millis"

export const watch = <A>(
  stopping: Effect.Effect<boolean>,
  toReceive: Channel<A>,
  toStore: Channel<Received>
): Effect.Effect<void> =>
  Effect.gen(function*() {
    while (!(yield* stopping)) yield* Effect.sleep(pollEvery)
    yield* Queue.clear(toReceive)
    yield* Queue.end(toReceive)
    const dropped = yield* Queue.clear(toStore)
    yield* Effect.forEach(dropped, (r) => r.payload.release, { discard: true })
    yield* Effect.logInfo(
      `stopping: no new objects are taken; finishing the ones in flight and committing what is stored`
    )
  })
