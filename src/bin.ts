#!/usr/bin/env node
/**
 * The executable: runs the CLI on Node, with logs on stderr and exit codes that scripts can rely on:
 * 0 done, 1 rows failed or the run failed, 2 bad usage or a setup problem found before any work,
 * 130 interrupted.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Config, Effect, Layer, Logger, LogLevel, References, Runtime } from "effect"
import { CliError } from "effect/cli"
import { run, version } from "./Cli.ts"
import * as Tracing from "./observability/Tracing.ts"

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

/** Bad usage: the CLI has already printed the problem and the help. */
class UsageError extends Error {
  readonly [Runtime.errorExitCode] = 2
  readonly [Runtime.errorReported] = false
}

const main = run.pipe(
  Effect.catchIf(
    (error): error is CliError.CliError => CliError.isCliError(error),
    (error) =>
      error._tag === "ShowHelp" && error.errors.length === 0 ? Effect.void : Effect.fail(new UsageError(error.message))
  ),
  // Our errors carry readable messages: print the message, not a stack trace.
  Effect.tapCause((cause) =>
    Effect.sync(() => {
      if (Cause.hasInterruptsOnly(cause)) return
      const error = Cause.squash(cause)
      if (error instanceof UsageError) return
      const tagged = typeof error === "object" && error !== null && "_tag" in error
      process.stderr.write(`lo-migrate: ${tagged ? (error as unknown as Error).message : Cause.pretty(cause)}\n`)
    })
  ),
  Effect.provide(NodeServices.layer),
  // spans go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set; otherwise this layer does nothing
  Effect.provide(Tracing.layer(version)),
  Effect.provide(logging)
)

NodeRuntime.runMain(main, { disableErrorReporting: true })
