/**
 * Where text goes: reports and failures to stderr, so that stdout carries only results (or, with
 * `--progress json`, JSON events).
 */
import { Effect } from "effect"

export const writeStderr = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    process.stderr.write(text)
  })

export const writeStdout = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    process.stdout.write(text)
  })
