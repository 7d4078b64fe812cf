/**
 * Rows this run had to skip. Each is counted in Stats, logged with its key and reason, and kept (up to a
 * bound, so memory stays flat on a table full of bad rows) for the final summary.
 */
import { Context, Effect, Layer } from "effect"
import type { RowFailure } from "../domain/LargeObject.ts"
import { Stats } from "./Stats.ts"

/** Failures listed in the summary; beyond this they are still counted and logged. */
export const listedFailures = 1000

export class Failures extends Context.Service<Failures, {
  readonly record: (failure: RowFailure) => Effect.Effect<void>
  /** the first `listedFailures` failures, in the order they happened */
  readonly list: Effect.Effect<ReadonlyArray<RowFailure>>
  /** calls `listener` for every failure recorded from now on (progress events) */
  readonly listen: (listener: (failure: RowFailure) => Effect.Effect<void>) => Effect.Effect<void>
}>()("lo-migrate/pipeline/Failures") {
  static readonly layer = Layer.effect(
    Failures,
    Effect.gen(function*() {
      const stats = yield* Stats
      const kept: Array<RowFailure> = []
      const listeners: Array<(failure: RowFailure) => Effect.Effect<void>> = []
      return Failures.of({
        record: (failure) =>
          Effect.gen(function*() {
            yield* stats.failed
            if (kept.length < listedFailures) kept.push(failure)
            yield* Effect.logWarning(
              `failed ${failure.key}${failure.oid === null ? "" : ` (oid ${failure.oid})`}: ${failure.reason}: ${failure.detail}`
            )
            for (const listener of listeners) yield* listener(failure)
          }),
        list: Effect.sync(() => [...kept]),
        listen: (listener) =>
          Effect.sync(() => {
            listeners.push(listener)
          })
      })
    })
  )
}
