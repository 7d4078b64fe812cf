// Runs the real executable (dist/cli/bin.js, built by `npm test` before vitest) in a child process, as a
// user would: argv, environment, stdout, stderr, exit code, signals.
import { Effect } from "effect"
import { spawn, type ChildProcess } from "node:child_process"
import { fileURLToPath } from "node:url"

export const binPath = fileURLToPath(new URL("../../dist/cli/bin.js", import.meta.url))
/** the `zodb-convert` executable */
export const zodbConvertBinPath = fileURLToPath(new URL("../../dist/cli/zodbConvertBin.js", import.meta.url))

export interface CliResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface CliOptions {
  readonly env?: Readonly<Record<string, string | undefined>>
  /** the executable (default lo-migrate's) */
  readonly bin?: string
  /** called once the process is running, e.g. to kill it at some moment */
  readonly onStart?: (child: ChildProcess, output: { readonly stderr: () => string; readonly stdout: () => string }) => void
}

/** The environment a test run starts from: no AWS or lo-migrate settings leak in from the machine. */
const cleanEnv = (): Record<string, string | undefined> => {
  const env: Record<string, string | undefined> = { ...process.env }
  for (const key of Object.keys(env)) {
    if (key.startsWith("AWS_") || key.startsWith("LO_MIGRATE_") || key === "LOG_LEVEL") delete env[key]
  }
  return env
}

export const runCli = (args: ReadonlyArray<string>, options: CliOptions = {}): Effect.Effect<CliResult> =>
  Effect.callback<CliResult>((resume) => {
    const child = spawn(process.execPath, [options.bin ?? binPath, ...args], {
      env: { ...cleanEnv(), ...options.env } as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("close", (code, signal) => resume(Effect.succeed({ code, signal, stdout, stderr })))
    options.onStart?.(child, { stderr: () => stderr, stdout: () => stdout })
    return Effect.sync(() => {
      child.kill("SIGKILL")
    })
  })
