/**
 * The live progress display for a terminal (`--progress tty`, the default when stderr is a TTY): a few
 * lines redrawn in place on stderr: overall bar, rates, ETA, per-stage counts and queue fill.
 *
 * `render` is a pure function of snapshots (tested as such); `make` only samples Stats, keeps a few
 * seconds of history for the rates, and moves the cursor. Colors follow NO_COLOR (https://no-color.org).
 */
import { type Console, Duration, Effect, Semaphore } from "effect"
import { format } from "node:util"
import type { Display, DisplayFactory } from "./Display.ts"
import { formatBytes, formatDuration, progressOf } from "./Monitor.ts"
import { Stats, type StatsSnapshot } from "../core/Stats.ts"

export interface RenderInput {
  readonly current: StatsSnapshot
  /** an earlier snapshot the rates are measured against (a few seconds back); undefined: since the start */
  readonly earlier?: StatsSnapshot | undefined
  /** terminal columns; every line is cut to fit, so a redraw always covers the same rows */
  readonly width: number
  readonly color: boolean
  /** the last frame: "done" instead of the ETA, average rates */
  readonly final: boolean
}

export type Style = "bar" | "empty" | "bad" | "warn" | "label" | undefined

/** A piece of a display line, styled when colors are on. */
export interface Part {
  readonly text: string
  readonly style?: Style
}

const ansi: Record<Exclude<Style, undefined>, readonly [string, string]> = {
  bar: ["\x1b[32m", "\x1b[39m"],
  empty: ["\x1b[2m", "\x1b[22m"],
  bad: ["\x1b[31m", "\x1b[39m"],
  warn: ["\x1b[33m", "\x1b[39m"],
  label: ["\x1b[1m", "\x1b[22m"]
}

/** Joins parts, cut to `width` visible characters, styled only when `color`. */
export const fit = (parts: ReadonlyArray<Part>, width: number, color: boolean): string => {
  let room = Math.max(0, width)
  let out = ""
  for (const part of parts) {
    if (room <= 0) break
    const text = part.text.length > room ? part.text.slice(0, room) : part.text
    room -= text.length
    out += color && part.style !== undefined && text !== "" ? `${ansi[part.style][0]}${text}${ansi[part.style][1]}` : text
  }
  return out
}

/** A whole number with thousands separators: `1,234`. */
export const count = (n: number): string => Math.trunc(n).toLocaleString("en-US")

/** `cells` cells of a bar, `fraction` of them full. */
export const bar = (fraction: number, cells: number): ReadonlyArray<Part> => {
  const f = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0))
  const full = Math.round(f * cells)
  return [{ text: "█".repeat(full), style: "bar" }, { text: "░".repeat(cells - full), style: "empty" }]
}

/** Change per second; 0 when no time has passed. */
export const perSecond = (delta: number, millis: number): number => (millis > 0 ? (delta * 1000) / millis : 0)

/** The display's lines (no newlines, no cursor movement). */
export const render = (input: RenderInput): ReadonlyArray<string> => {
  const { current, final, width, color } = input
  const base = final ? undefined : input.earlier
  const since = current.at - (base?.at ?? current.startedAt)
  const committed = current.processed.committer
  const objectRate = perSecond(committed - (base?.processed.committer ?? 0), since)
  const byteRate = perSecond(current.bytes.committed - (base?.bytes.committed ?? 0), since)
  const p = progressOf(current)
  const todo = current.remaining
  const fraction = todo === undefined ? 0 : todo === 0 ? 1 : committed / todo
  const left = todo === undefined ? undefined : Math.max(0, todo - committed - current.failed)
  const eta = final
    ? "done"
    : left === undefined || objectRate <= 0
    ? "ETA --"
    : `ETA ${formatDuration(left / objectRate)}`
  const barCells = Math.max(10, Math.min(40, width - 60))
  const lines: Array<string> = []

  lines.push(fit([
    { text: "lo-migrate ", style: "label" },
    { text: "[" },
    ...bar(fraction, barCells),
    { text: "] " },
    { text: `${(fraction * 100).toFixed(1).padStart(5)}%  ` },
    { text: `${count(committed)} of ${todo === undefined ? "?" : count(todo)} objects, ${formatBytes(current.bytes.committed)}  ` },
    { text: eta }
  ], width, color))

  lines.push(fit([
    { text: "  rate    ", style: "label" },
    { text: `${count(objectRate)} obj/s, ${formatBytes(byteRate)}/s   ` },
    { text: `elapsed ${formatDuration(p.elapsedSeconds)}   ` },
    { text: `failed ${count(current.failed)}`, style: current.failed > 0 ? "bad" : undefined },
    { text: "   " },
    { text: `retries ${count(current.retries)}`, style: current.retries > 0 ? "warn" : undefined },
    ...(p.migrated !== undefined && p.total !== undefined && p.total !== todo
      ? [{ text: `   table ${count(p.migrated)} of ${count(p.total)} migrated` }]
      : [])
  ], width, color))

  lines.push(fit([
    { text: "  stages  ", style: "label" },
    {
      text: `listed ${count(current.processed.observer)} · read ${count(current.processed.receiver)} · ` +
        `stored ${count(current.processed.storer)} · committed ${count(committed)}`
    }
  ], width, color))

  const queueParts: Array<Part> = [{ text: "  queues  ", style: "label" }]
  for (const q of current.queues) {
    const f = q.capacity > 0 ? q.used / q.capacity : 0
    queueParts.push({ text: `${q.name} ` }, ...bar(f, 8), { text: ` ${(f * 100).toFixed(0).padStart(3)}%   ` })
  }
  if (current.queues.length > 0) lines.push(fit(queueParts, width, color))
  return lines
}

/**
 * The readings of about the last `window`: each call keeps `current` and returns the oldest reading
 * still in the window (what rates are measured against), undefined for the first.
 */
export const rateWindow = <A extends { readonly at: number }>(window: Duration.Input) => {
  const millis = Duration.toMillis(window)
  const history: Array<A> = []
  return (current: A): A | undefined => {
    while (history.length > 1 && current.at - history[0]!.at > millis) history.shift()
    const earlier = history[0]
    history.push(current)
    return earlier
  }
}

/** Cursor control for redrawing in place. */
export const hideCursor = "\x1b[?25l"
export const showCursor = "\x1b[?25h"
/** Moves the cursor to the first column `n` lines up. */
const up = (n: number) => (n > 0 ? `\x1b[${n}F` : "")
const clearLine = "\x1b[2K"
const clearBelow = "\x1b[J"

/** The escape sequence that replaces a frame of `previousLines` lines with `lines`. */
export const redraw = (previousLines: number, lines: ReadonlyArray<string>): string =>
  up(previousLines) + lines.map((line) => `${clearLine}${line}\n`).join("") + clearBelow

/** NO_COLOR set to anything non-empty turns colors off (https://no-color.org). */
export const colorAllowed = (env: Readonly<Record<string, string | undefined>> = process.env): boolean =>
  env.NO_COLOR === undefined || env.NO_COLOR === ""

export interface ProgressDisplayOptions {
  readonly write: (text: string) => Effect.Effect<void>
  /** terminal width, read at each frame (it can change) */
  readonly columns: () => number
  readonly color: boolean
  /** time between frames */
  readonly every?: Duration.Input | undefined
  /** rates are measured over about this window */
  readonly window?: Duration.Input | undefined
}

export interface Terminal {
  readonly display: DisplayFactory
  /**
   * Provide this Console around the run: while the display is on screen, what is written to stderr
   * through it (log lines: the default logger uses `console.error`) is printed above the display at
   * the next frame instead of being overdrawn by it.
   */
  readonly console: Console.Console
}

/**
 * A region of a terminal redrawn in place: frames drawn with `draw` replace each other, and what is
 * written meanwhile to stderr through `console` (log lines) or to another stream with `above` is printed
 * above the frame instead of being overdrawn by it. Shared by every live display.
 */
export interface Screen {
  /** Provide this Console around the run: its stderr lines go above the frame while one is on screen. */
  readonly console: Console.Console
  /**
   * Replaces the last frame with `lines`, the log lines written since above them. `final`: the frame
   * stays on screen, the cursor comes back, and from then on log lines are printed at once.
   */
  readonly draw: (lines: ReadonlyArray<string>, final: boolean) => Effect.Effect<void>
  /**
   * Writes `text` with `write` (another stream on the same terminal, such as stdout) above the frame,
   * which is drawn again below it; without a frame on screen, just writes it.
   */
  readonly above: (text: string, write: (text: string) => Effect.Effect<void>) => Effect.Effect<void>
}

/** A Screen on the terminal `write` writes to (stderr), capturing `base`'s stderr methods. */
export const screen = (write: (text: string) => Effect.Effect<void>, base: Console.Console = globalThis.console): Screen => {
  const pending: Array<string> = []
  let active = false
  let drawn = 0
  let shown: ReadonlyArray<string> = []
  // a frame and a line above it are each several writes: never interleaved
  const lock = Semaphore.makeUnsafe(1)
  const capture = (direct: (...args: ReadonlyArray<any>) => void) => (...args: ReadonlyArray<any>) => {
    if (active) pending.push(`${format(...args)}\n`)
    else direct(...args)
  }
  const console: Console.Console = {
    ...base,
    assert: base.assert.bind(base),
    clear: base.clear.bind(base),
    count: base.count.bind(base),
    countReset: base.countReset.bind(base),
    dir: base.dir.bind(base),
    dirxml: base.dirxml.bind(base),
    group: base.group.bind(base),
    groupCollapsed: base.groupCollapsed.bind(base),
    groupEnd: base.groupEnd.bind(base),
    log: base.log.bind(base),
    table: base.table.bind(base),
    time: base.time.bind(base),
    timeEnd: base.timeEnd.bind(base),
    timeLog: base.timeLog.bind(base),
    trace: base.trace.bind(base),
    error: capture(base.error.bind(base)),
    warn: capture(base.warn.bind(base)),
    info: capture(base.info.bind(base)),
    debug: capture(base.debug.bind(base))
  }
  const guarded = <A>(effect: Effect.Effect<A>) => Effect.uninterruptible(Semaphore.withPermit(lock)(effect))
  const draw = (lines: ReadonlyArray<string>, final: boolean) =>
    guarded(Effect.suspend(() => {
      // log lines written since the last frame go where the frame was; the frame follows below them
      const logged = pending.splice(0).join("")
      const first = !active
      active = !final
      const text = (first ? hideCursor : "") + up(drawn) + (logged === "" ? "" : clearBelow + logged) + redraw(0, lines) +
        (final ? showCursor : "")
      drawn = lines.length
      shown = lines
      return write(text)
    }))
  const above = (text: string, other: (text: string) => Effect.Effect<void>) =>
    guarded(Effect.suspend(() => {
      if (!active) return other(text)
      const logged = pending.splice(0).join("")
      return Effect.andThen(
        Effect.andThen(write(up(drawn) + clearBelow + logged), other(text)),
        write(redraw(0, shown))
      )
    }))
  return { console, draw, above }
}

/** The live display and the Console that keeps log lines above it. */
export const terminal = (options: ProgressDisplayOptions, base: Console.Console = globalThis.console): Terminal => {
  const live = screen(options.write, base)
  const display: DisplayFactory = Effect.gen(function*() {
    const stats = yield* Stats
    const every = options.every ?? "250 millis"
    const earlierThan = rateWindow<StatsSnapshot>(options.window ?? "5 seconds")

    const frame = (final: boolean) =>
      Effect.uninterruptible(Effect.gen(function*() {
        const current = yield* stats.snapshot
        const lines = render({
          current,
          earlier: earlierThan(current),
          width: Math.max(20, options.columns() - 1),
          color: options.color,
          final
        })
        yield* live.draw(lines, final)
      }))

    const display: Display = {
      loop: Effect.forever(Effect.andThen(frame(false), Effect.sleep(every))),
      final: frame(true)
    }
    return display
  })
  return { display, console: live.console }
}

/** The live display alone (log lines written meanwhile may be overdrawn: prefer `terminal`). */
export const make = (options: ProgressDisplayOptions): DisplayFactory => terminal(options).display
