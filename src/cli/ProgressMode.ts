/**
 * `--progress auto|tty|plain|json`: how a CLI run shows its progress.
 * - tty: the live display on stderr (ProgressDisplay), redrawn in place;
 * - plain: the original's periodic report on stderr (Monitor), every --interval seconds;
 * - json: one JSON object a line on stdout (Events.toJson): a snapshot every --interval seconds, each
 *   failed row, and a final summary; stdout carries nothing else;
 * - auto: tty when stderr is a terminal, plain otherwise.
 * The commands with a task of known size (verify, prune, plan's sampling, upload-blobs) show the same
 * three forms through TaskProgress.
 */
import { Config, type Console, Effect } from "effect"
import { Flag } from "effect/cli"
import type { RunOptions } from "../migrate/Migration.ts"
import { writeStderr, writeStdout } from "../core/Output.ts"
import * as Events from "../pipeline/Events.ts"
import * as ProgressDisplay from "../pipeline/ProgressDisplay.ts"
import * as TaskProgress from "../pipeline/TaskProgress.ts"
import { described } from "./Flags.ts"

export const modes = ["auto", "tty", "plain", "json"] as const
export type ProgressMode = (typeof modes)[number]

/** The `--progress` flag, with its environment fallback: the same on every command that has it. */
export const flag = Flag.Literals("progress", modes).pipe(
  Flag.withDescription(described(
    "progress display: tty (live, redrawn on stderr), plain (a periodic report or line on stderr), " +
      "json (one JSON object a line on stdout, nothing else there), auto (tty when stderr is a terminal, else plain)",
    { default: "auto", env: "LO_MIGRATE_PROGRESS" }
  )),
  Flag.withFallbackConfig(Config.Literals(modes, "LO_MIGRATE_PROGRESS")),
  Flag.withDefault("auto" as const)
)

export const resolve = (mode: ProgressMode, stderrIsTty: boolean): Exclude<ProgressMode, "auto"> =>
  mode === "auto" ? (stderrIsTty ? "tty" : "plain") : mode

/** The progress of a task of known (or unknown) size in `mode`, on this process's stdout and stderr. */
export const task = (mode: ProgressMode, options: Omit<TaskProgress.TaskOptions, "mode" | "io">): TaskProgress.Task =>
  TaskProgress.make({
    ...options,
    mode: resolve(mode, process.stderr.isTTY === true),
    io: TaskProgress.processIo(ProgressDisplay.colorAllowed())
  })

/**
 * The parts of `RunOptions` that show progress in `mode`, and the Console to provide around the run
 * (tty: keeps log lines above the live display).
 */
export const runOptions = (
  mode: Exclude<ProgressMode, "auto">,
  intervalSeconds: number
): Pick<RunOptions, "report" | "display" | "onEvent" | "eventInterval"> & { readonly console?: Console.Console } => {
  switch (mode) {
    case "plain":
      return { report: writeStderr }
    case "tty": {
      const terminal = ProgressDisplay.terminal({
        write: writeStderr,
        columns: () => process.stderr.columns || 80,
        color: ProgressDisplay.colorAllowed()
      })
      return { report: writeStderr, display: terminal.display, console: terminal.console }
    }
    case "json":
      return {
        report: () => Effect.void,
        display: Effect.succeed({ loop: Effect.never, final: Effect.void }),
        onEvent: (event) => writeStdout(Events.toJsonLine(event)),
        eventInterval: `${intervalSeconds} seconds`
      }
  }
}
