/**
 * Backpressure by bytes: a budget for the payloads held in memory between the receivers and the
 * storers. A receiver takes an object's (claimed) size before it buffers the bytes, and the payload
 * gives it back when the storer is done with it (or when the run's scope closes). Queue capacities bound
 * the number of objects in flight; this bounds their bytes, so a store queue full of 1 MiB objects
 * cannot take a gigabyte. An object larger than the whole budget takes all of it: it still gets
 * through, alone.
 */
import { Effect, Semaphore } from "effect"

export interface MemoryBudget {
  readonly bytes: number
  /** Waits until `bytes` (capped at the budget) are free and takes them; returns how many were taken. */
  readonly take: (bytes: number) => Effect.Effect<number>
  /** Gives back what `take` returned (or part of it). */
  readonly release: (taken: number) => Effect.Effect<void>
  /** `take`, returning an idempotent release of what was taken. */
  readonly acquire: (bytes: number) => Effect.Effect<Effect.Effect<void>>
  /**
   * Lifts the limit for good: used when the storers have stopped, so that no receiver waits for bytes
   * that will never come back and every one of them reaches its (failing) hand-over and ends.
   */
  readonly lift: Effect.Effect<void>
}

export const make = (bytes: number): Effect.Effect<MemoryBudget> =>
  Effect.gen(function*() {
    const total = Math.max(1, Math.floor(bytes))
    const semaphore = yield* Semaphore.make(total)
    const take = (n: number) => {
      const permits = Math.min(total, Math.max(0, Math.ceil(n)))
      return permits === 0 ? Effect.succeed(0) : Effect.as(semaphore.take(permits), permits)
    }
    const release = (taken: number) => (taken <= 0 ? Effect.void : Effect.asVoid(semaphore.release(taken)))
    return {
      lift: semaphore.resize(Number.MAX_SAFE_INTEGER),
      bytes: total,
      take,
      release,
      acquire: (n) =>
        Effect.map(take(n), (taken) => {
          let done = false
          return Effect.suspend(() => {
            if (done) return Effect.void
            done = true
            return release(taken)
          })
        })
    }
  })
