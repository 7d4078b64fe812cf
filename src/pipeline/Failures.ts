/**
 * Rows this run had to skip. Each is counted in Stats, logged with its key and reason, kept (up to a
 * bound, so memory stays flat on a table full of bad rows) for the final summary, and, with
 * `--failures FILE`, written to FILE as one JSON line each.
 */
import { Context, Effect, Layer, type Scope } from "effect"
import * as NodeFs from "node:fs"
import { SettingsError } from "../domain/Errors.ts"
import type { RowFailure } from "../domain/LargeObject.ts"
import { Stats } from "../core/Stats.ts"

/** Failures listed in the summary; beyond this they are still counted and logged. */
export const listedFailures = 1000

const openSink = (file: string) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => NodeFs.openSync(file, "w", 0o644),
      catch: (cause) =>
        new SettingsError({
          setting: "--failures",
          problem: `cannot write ${file}: ${(cause as Error).message}`,
          fix: "give a file in a directory that exists and this user may write to"
        })
    }),
    (fd) => Effect.sync(() => NodeFs.closeSync(fd))
  )

const make = (file: string | undefined): Effect.Effect<Failures["Service"], SettingsError, Stats | Scope.Scope> =>
  Effect.gen(function*() {
    const stats = yield* Stats
    const fd = file === undefined ? undefined : yield* openSink(file)
    const kept: Array<RowFailure> = []
    const listeners: Array<(failure: RowFailure) => Effect.Effect<void>> = []
    return Failures.of({
      record: (failure) =>
        Effect.gen(function*() {
          yield* stats.failed
          if (kept.length < listedFailures) kept.push(failure)
          if (fd !== undefined) {
            const line = JSON.stringify({ ...failure, at: new Date().toISOString() })
            yield* Effect.sync(() => NodeFs.writeSync(fd, `${line}\n`)).pipe(
              Effect.catchDefect((e) => Effect.logError(`cannot write to ${file}: ${String(e)}`))
            )
          }
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

export class Failures extends Context.Service<Failures, {
  readonly record: (failure: RowFailure) => Effect.Effect<void>
  /** the first `listedFailures` failures, in the order they happened */
  readonly list: Effect.Effect<ReadonlyArray<RowFailure>>
  /** calls `listener` for every failure recorded from now on (progress events) */
  readonly listen: (listener: (failure: RowFailure) => Effect.Effect<void>) => Effect.Effect<void>
}>()("lo-migrate/pipeline/Failures") {
  static readonly layer = Layer.effect(Failures, make(undefined))

  /**
   * `layer`, and every failure also goes to `file` as one JSON line (`--failures FILE`), written as it
   * happens, so that a user can act on all of them, even after a crash. The file is truncated at the
   * start of the run; a file that cannot be written is a setup problem (exit 2) found before any work.
   */
  static readonly layerTo = (file: string | undefined) => Layer.effect(Failures, make(file))
}

