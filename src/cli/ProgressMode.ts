/**
 * `--progress auto|tty|plain|json`: how a CLI run shows its progress.
 * - tty: the live display on stderr (ProgressDisplay), redrawn in place;
 * - plain: the original's periodic report on stderr (Monitor), every --interval seconds;
 * - json: one JSON object a line on stdout (Events.toJson): a snapshot every --interval seconds, each
 *   failed row, and a final summary; stdout carries nothing else;
 * - auto: tty when stderr is a terminal, plain otherwise.
 */
import { type Console, Effect } from "effect"
import type { RunOptions } from "../migrate/Migration.ts"
import { writeStderr } from "../core/Output.ts"
import * as Events from "../pipeline/Events.ts"
import * as ProgressDisplay from "../pipeline/ProgressDisplay.ts"

export const modes = ["auto", "tty", "plain", "json"] as const
export type ProgressMode = (typeof modes)[number]

export const resolve = (mode: ProgressMode, stderrIsTty: boolean): Exclude<ProgressMode, "auto"> =>
  mode === "auto" ? (stderrIsTty ? "tty" : "plain") : mode

export const writeStdout = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    process.stdout.write(text)
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
