// Steering a running CLI from a test: act once enough rows are marked, bound how long a run may take,
// and look for temp files it left.
import { assert } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { SqlClient } from "effect/sql"
import type { ChildProcess } from "node:child_process"
import * as NodeFs from "node:fs"
import type { CliResult } from "./Cli.ts"

/** Rows of `_nice_binary` marked so far. */
export const markedCount = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`
  return Number(row!.n)
})

/**
 * An `onStart` for `runCli` that runs `action` once, as soon as at least `marked` rows are marked (polled
 * every 50 ms through `run`, a runner of effects that need the test's SqlClient). `state.fired` tells
 * whether it ran; a failing action is kept in `state.error`.
 */
export const whenMarked = (
  marked: number,
  run: <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) => Promise<A>,
  action: (child: ChildProcess) => Effect.Effect<void, unknown, SqlClient.SqlClient>
) => {
  const state = { fired: false, error: undefined as unknown }
  const onStart = (child: ChildProcess) => {
    let busy = false
    const timer = setInterval(() => {
      if (state.fired || busy) return
      busy = true
      run(markedCount.pipe(Effect.catch(() => Effect.succeed(0)))).then((n) => {
        if (state.fired || n < marked) return
        state.fired = true
        clearInterval(timer)
        return run(action(child)).catch((e) => {
          state.error = e
        })
      }).finally(() => {
        busy = false
      })
    }, 50)
    child.on("close", () => clearInterval(timer))
  }
  return { state, onStart }
}

/** A runner for `whenMarked`, bound to the test's SqlClient. */
export const runnerOf = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return <A, E>(effect: Effect.Effect<A, E, SqlClient.SqlClient>) =>
    Effect.runPromise(Effect.provideService(effect, SqlClient.SqlClient, sql))
})

/** Runs the CLI and fails the test if it has not ended within `bound` (the child is then killed). */
export const endsWithin = (bound: Duration.Input, cli: Effect.Effect<CliResult>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const result = yield* cli.pipe(
      Effect.timeoutOrElse({
        duration: bound,
        orElse: () => Effect.die(new Error(`the run had not ended after ${Duration.format(Duration.fromInputUnsafe(bound))}`))
      })
    )
    return { ...result, elapsedMs: Date.now() - started }
  })

/** Names of lo-migrate temp files in `dir`. */
export const tempFilesIn = (dir: string): ReadonlyArray<string> =>
  NodeFs.readdirSync(dir).filter((name) => name.startsWith("lo_migrate."))

export const assertNoTempFiles = (dir: string) =>
  Effect.sync(() => assert.deepStrictEqual(tempFilesIn(dir), [], `temp files left in ${dir}`))
