/**
 * Running a command tree as the process, with logs on stderr and exit codes that scripts can rely on:
 * 0 done, 1 rows failed or the run failed, 2 bad usage or a setup problem found before any work,
 * 130 interrupted. Both executables (lo-migrate, zodb-convert) run through it.
 */
import * as NodeServices from "@effect/platform-node/NodeServices"
import { Cause, Config, Effect, Layer, Logger, LogLevel, References, Runtime } from "effect"
import { CliError } from "effect/cli"
import { version } from "./Cli.ts"
import * as FailureReport from "./FailureReport.ts"
import * as Tracing from "../observability/Tracing.ts"
import { type StopCell, StopRequest } from "../core/StopRequest.ts"

/** LOG_LEVEL (any case) sets the level; the CLI's --log-level, applied inside, wins over it. */
const logging = Layer.unwrap(Effect.gen(function*() {
  const raw = yield* Config.String("LOG_LEVEL").pipe(Config.withDefault("info"))
  const level = LogLevel.values.find((l) => l.toLowerCase() === raw.trim().toLowerCase())
  return Layer.mergeAll(
    Logger.layer([Logger.defaultLogger]),
    Layer.succeed(Logger.LogToStderr, true),
    Layer.succeed(References.MinimumLogLevel, level ?? "Info")
  )
}))

/**
 * Bad usage (an unknown or missing flag, a value of the wrong type, an unknown command): effect/cli has
 * already printed the problem, its "did you mean" and the help. Exported for the exit-code inventory
 * (test/ExitCodes.test.ts).
 */
export class UsageError extends Error {
  readonly [Runtime.errorExitCode] = 2
  readonly [Runtime.errorReported] = false
}

const mainOf = <E>(name: string, run: Effect.Effect<void, E, NodeServices.NodeServices | StopRequest>) => (run as Effect.Effect<void, unknown, NodeServices.NodeServices | StopRequest>).pipe(
  Effect.catchIf(
    (error: unknown): error is CliError.CliError => CliError.isCliError(error),
    (error) =>
      error._tag === "ShowHelp" && error.errors.length === 0 ? Effect.void : Effect.fail(new UsageError(error.message))
  ),
  // Our errors carry readable messages: print the message, not a stack trace; anything else is
  // reported as an unexpected error saying what failed (the full cause with LOG_LEVEL=debug).
  Effect.tapCause((cause) => {
    if (Cause.hasInterruptsOnly(cause) || Cause.squash(cause) instanceof UsageError) return Effect.void
    const line = FailureReport.report(cause)
    if (line === undefined) return Effect.void
    return Effect.andThen(
      Effect.sync(() => process.stderr.write(`${name}: ${line.message}\n`)),
      line.unexpected ? Effect.logDebug("the unexpected error in full", cause) : Effect.void
    )
  }),
  Effect.provide(NodeServices.layer),
  // spans go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set; otherwise this layer does nothing
  Effect.provide(Tracing.layer(version)),
  Effect.provide(logging)
)

/**
 * process.exit drops what stdout and stderr have not handed to a pipe yet (a reader slower than the
 * output: every FAILED line past the pipe's 64 KiB buffer was lost); an empty write's callback comes
 * once everything written before it is flushed.
 */
const exitFlushed = (code: number) => {
  let pending = 2
  const done = () => {
    if (--pending === 0) process.exit(code)
  }
  process.stdout.write("", done)
  process.stderr.write("", done)
}

/**
 * After the signal that interrupts, the interruption's clean-up (aborting uploads, unlocking, closing
 * pools) gets this long; a server that does not answer cannot hold the process past it.
 */
const hardStopAfterMs = 1500

/** Ends the process now: the local clean-ups, a line saying so, exit 130. */
const hardStop = (name: string, cell: StopCell) => {
  for (const cleanUp of cell.atHardStop) {
    try {
      cleanUp()
    } catch {
      // best effort: the next run sweeps what is left
    }
  }
  process.stderr.write(`${name}: stopped at once: clean-up did not finish within ${hardStopAfterMs / 1000} s\n`)
  exitFlushed(130)
  // a reader that takes nothing cannot hold the exit either
  setTimeout(() => process.exit(130), 300).unref()
}

/**
 * Like NodeRuntime.runMain (@effect/platform-node), but the first SIGINT/SIGTERM asks a command that supports it (migrate) to
 * stop gracefully; the second one, or any signal while no such command runs, interrupts at once, and the
 * process ends within `hardStopAfterMs` whatever is in flight.
 */
const makeRunMain = (name: string, stop: StopCell) => Runtime.makeRunMain(({ fiber, teardown }) => {
  let interrupting = false
  const onSignal = (signal: NodeJS.Signals) => {
    if (stop.enabled && !stop.requested) {
      stop.requested = true
      process.stderr.write(
        `${name}: ${signal} received: finishing the objects in flight and committing them; ` +
          `send it again to stop at once\n`
      )
      return
    }
    if (interrupting) return hardStop(name, stop)
    interrupting = true
    setTimeout(() => hardStop(name, stop), hardStopAfterMs).unref()
    fiber.interruptUnsafe(fiber.id)
  }
  fiber.addObserver((exit) => {
    process.removeListener("SIGINT", onSignal)
    process.removeListener("SIGTERM", onSignal)
    // as NodeRuntime.runMain: exit explicitly only when needed, so a clean run ends naturally
    teardown(exit, (code) => {
      if (code !== 0 || stop.requested) exitFlushed(code)
    })
  })
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
})

/** Runs `program` as the process: `name` prefixes its error lines; see the header for the exit codes. */
export const runProcess = <E>(name: string, program: Effect.Effect<void, E, NodeServices.NodeServices | StopRequest>): void => {
  const stop: StopCell = { requested: false, enabled: false, atHardStop: new Set() }
  makeRunMain(name, stop)(mainOf(name, program).pipe(Effect.provide(StopRequest.fromCell(stop))), { disableErrorReporting: true })
}
