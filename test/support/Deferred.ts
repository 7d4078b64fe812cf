// Helpers of the deferred-mode tests (migrate --deferred-blobs, upload-blobs) of every profile: the
// manifest as written, and a SIGKILL at a chosen moment of a CLI run.
import { Effect } from "effect"
import type { ChildProcess } from "node:child_process"
import * as NodeFs from "node:fs"
import * as Manifest from "../../src/s3/Manifest.ts"

/** The manifest's lines (header first), without the final newline. */
export const manifestLines = (path: string): ReadonlyArray<string> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l !== "")

/** The manifest's entries, decoded as upload-blobs decodes them; a malformed line fails the test. */
export const manifestEntries = (path: string): ReadonlyArray<Manifest.Entry> =>
  manifestLines(path).slice(1).map((line, i) => {
    const entry = Manifest.decode(line)
    if (typeof entry === "string") throw new Error(`manifest line ${i + 2} ${entry}`)
    return entry
  })

/**
 * A `runCli` `onStart` that SIGKILLs the process as soon as `condition` holds, polled every 20 ms (a
 * failing poll counts as false). The test then checks `signal === "SIGKILL"`: a run that ended first
 * did not test the kill.
 */
export const killWhen = (condition: Effect.Effect<boolean, unknown>) => (child: ChildProcess) => {
  let polling = false
  const timer = setInterval(() => {
    if (polling) return
    polling = true
    Effect.runPromise(condition.pipe(Effect.catch(() => Effect.succeed(false)))).then((yes) => {
      polling = false
      if (yes) {
        clearInterval(timer)
        child.kill("SIGKILL")
      }
    }, () => {
      polling = false
    })
  }, 20)
  child.on("close", () => clearInterval(timer))
}
