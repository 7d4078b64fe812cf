/**
 * What watches a run: the periodic report (Monitor), the live TTY display, JSON events, the library's
 * event stream. Each is a `Display`: a loop the run forks for its duration and interrupts at the end,
 * then one final call. Built inside the run, so it reads the run's Stats.
 */
import { Effect } from "effect"
import { type Monitor, makeMonitor, type MonitorOptions } from "./Monitor.ts"
import type { Stats } from "../core/Stats.ts"

export interface Display {
  /** runs until interrupted (when the pipeline ends) */
  readonly loop: Effect.Effect<never>
  /** after the loop was interrupted: the last frame, report or event */
  readonly final: Effect.Effect<void>
}

export type DisplayFactory = Effect.Effect<Display, never, Stats>

/** The original's periodic report (`--progress plain`). */
export const report = (options: MonitorOptions): DisplayFactory =>
  Effect.map(makeMonitor(options), (monitor: Monitor): Display => monitor)

/** Several displays as one: loops run side by side, finals one after the other. */
export const all = (displays: ReadonlyArray<Display>): Display => ({
  loop: Effect.andThen(
    Effect.all(displays.map((d) => d.loop), { concurrency: "unbounded", discard: true }),
    Effect.never
  ),
  final: Effect.forEach(displays, (d) => d.final, { discard: true })
})
