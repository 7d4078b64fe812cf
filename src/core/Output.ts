/**
 * Where human-facing text goes: reports and failures to stderr, so that stdout carries only results.
 */
import { Effect } from "effect"

export const writeStderr = (text: string): Effect.Effect<void> =>
  Effect.sync(() => {
    process.stderr.write(text)
  })
