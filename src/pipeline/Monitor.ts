/**
 * The periodic status report, a port of the original's monitor thread (`src/thread/monitor.rs`).
 *
 * The report reproduces the original's lines byte for byte (same text, widths, `UNKNOWN` for
 * missing values, blank lines, `(final stats)` on the last one). Our additions (data volume,
 * retries) come after the original's last section, so a reader of the old format still finds
 * every line where it was.
 *
 * Everything that does arithmetic or formatting is a pure function of two `StatsSnapshot`s;
 * the effectful part only sleeps, takes snapshots and hands the text to a `write` callback.
 */
import { Duration, Effect, Ref } from "effect"
import { Stats, type QueueName, type StageName, type StatsSnapshot } from "../core/Stats.js"

// ---------------------------------------------------------------------------------------------
// Rust-style number formatting
// ---------------------------------------------------------------------------------------------

/** Printed wherever a value is not known (yet). */
export const UNKNOWN = "UNKNOWN"

/** Rust `{:>w}`: right-aligned in `width` (numbers are right-aligned by default in Rust). */
export const padLeft = (s: string, width: number): string => s.padStart(width, " ")

/** Rust `{:w}` for strings: left-aligned in `width`. */
export const padRight = (s: string, width: number): string => s.padEnd(width, " ")

/** Rust `{:w}` for an integer; `undefined` prints `UNKNOWN`. */
export const formatInt = (n: number | undefined, width = 0): string =>
  padLeft(n === undefined ? UNKNOWN : String(Math.trunc(n)), width)

/**
 * `x` with `decimals` decimals, rounding like Rust's `{:.p}`: to the nearest, exact ties to even
 * (`3.125` -> `"3.12"`, `0.375` -> `"0.38"`). `Number.prototype.toFixed` rounds ties up, which differs
 * for values such as 32 of 1024 queue slots (3.125%).
 */
export const toFixedHalfEven = (x: number, decimals: number): string => {
  const rounded = x.toFixed(decimals)
  if (!Number.isFinite(x) || Math.abs(x) >= 1e21) return rounded
  // 40 more digits show whether the exact binary value is a tie (a double this size cannot be
  // closer than 1e-40 to a tie without being one).
  const exact = Math.abs(x).toFixed(Math.min(100, decimals + 40))
  const dot = exact.indexOf(".")
  const tail = exact.slice(dot + 1 + decimals)
  if (tail[0] !== "5" || /[^0]/.test(tail.slice(1))) return rounded
  const truncated = exact.slice(0, decimals === 0 ? dot : dot + 1 + decimals)
  const lastDigit = Number(truncated[truncated.length - 1])
  return lastDigit % 2 === 0 ? (x < 0 ? "-" : "") + truncated : rounded
}

/** Rust `{:w.p}` for a float, e.g. `{:7.1}` = `formatFixed(x, 7, 1)`; `undefined`/non-finite print `UNKNOWN`. */
export const formatFixed = (x: number | undefined, width: number, decimals: number): string =>
  padLeft(x === undefined || !Number.isFinite(x) ? UNKNOWN : toFixedHalfEven(x, decimals), width)

/** Rust `{:+w}` for an integer: the sign is always shown (`+0` for zero), e.g. `{:+6}` of 62 = `"   +62"`. */
export const formatSigned = (n: number | undefined, width: number): string =>
  padLeft(n === undefined ? UNKNOWN : (n < 0 ? "-" : "+") + String(Math.abs(Math.trunc(n))), width)

const pad2 = (n: number): string => String(n).padStart(2, "0")

/** `%Y-%m-%d %H:%M:%S` in the local time zone (the original used `chrono::Local`). */
export const formatLocalTime = (epochMillis: number): string => {
  const d = new Date(epochMillis)
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`
}

/** The original's duration format without parentheses: `1h 04m 40s` (hours unbounded, not padded). */
export const formatDuration = (seconds: number): string => {
  const s = Math.max(0, Math.trunc(seconds))
  return `${Math.trunc(s / 3600)}h ${pad2(Math.trunc(s / 60) % 60)}m ${pad2(s % 60)}s`
}

const KiB = 1024
const byteUnits = ["KiB", "MiB", "GiB", "TiB"] as const

/** Human-readable bytes, binary units with 2 decimals: `512 B`, `1.50 KiB`, `20.00 MiB`, `3.25 GiB`, `1.02 TiB`. */
export const formatBytes = (n: number): string => {
  if (Math.abs(n) < KiB) return `${n} B`
  let value = n / KiB
  let unit = 0
  while (Math.abs(value) >= KiB && unit < byteUnits.length - 1) {
    value /= KiB
    unit += 1
  }
  return `${value.toFixed(2)} ${byteUnits[unit]}`
}

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

export interface Progress {
  /** objects migrated so far, including those done by earlier runs: `total − remaining + committed` */
  readonly migrated: number | undefined
  /** rows in the table when the run started */
  readonly total: number | undefined
  /** `migrated / total × 100`; 100 for an empty table */
  readonly percent: number | undefined
  /** objects this run still has to migrate: `remaining − committed` (never below 0) */
  readonly remainingNow: number | undefined
  /** whole seconds since the run started (the original's `duration.as_secs()`) */
  readonly elapsedSeconds: number
  /**
   * estimated seconds until done: `remaining / committed × secs − secs`, truncated to whole seconds
   * and never below 0; undefined while nothing is committed, no whole second has passed, or the
   * totals are unknown
   */
  readonly etaSeconds: number | undefined
}

/** Progress and ETA exactly as the original computes them (in double instead of single precision). */
export const progressOf = (s: StatsSnapshot): Progress => {
  const committed = s.processed.committer
  const elapsedSeconds = Math.max(0, Math.floor((s.at - s.startedAt) / 1000))
  const known = s.remaining !== undefined && s.total !== undefined
  const migrated = known ? s.total! - s.remaining! + committed : undefined
  const percent = migrated === undefined || s.total === undefined
    ? undefined
    : s.total === 0
    ? 100
    : migrated / s.total * 100
  const remainingNow = s.remaining === undefined ? undefined : Math.max(0, s.remaining - committed)
  // Like the original, the ETA needs only `remaining` (the objects this run set out to migrate).
  const etaSeconds = s.remaining === undefined || committed === 0 || elapsedSeconds === 0
    ? undefined
    : Math.max(0, Math.trunc(s.remaining / committed * elapsedSeconds - elapsedSeconds))
  return { migrated, total: s.total, percent, remainingNow, elapsedSeconds, etaSeconds }
}

/** Change per second between two readings; undefined when no time has passed. */
export const ratePerSecond = (delta: number, elapsedMillis: number): number | undefined =>
  elapsedMillis > 0 ? delta / (elapsedMillis / 1000) : undefined

// ---------------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------------

export interface ReportInput {
  /** the snapshot of the previous report; undefined for the first report (speeds since start, changes from 0) */
  readonly previous: StatsSnapshot | undefined
  readonly current: StatsSnapshot
  /** shown as `(updated every: Ns)` */
  readonly intervalSeconds: number
  /** the last report: `(final stats)` instead of `(updated every: Ns)` */
  readonly final: boolean
  /** formats epoch milliseconds as `%Y-%m-%d %H:%M:%S`; defaults to local time */
  readonly formatTime?: ((epochMillis: number) => string) | undefined
}

const stageGroups: ReadonlyArray<readonly [StageName, string]> = [
  ["observer", "observer thread"],
  ["receiver", "receiver threads"],
  ["storer", "storer threads"],
  ["committer", "committer threads"]
]

const queueLabels: ReadonlyArray<readonly [QueueName, string]> = [
  ["receive", "receive queue"],
  ["store", "store queue"],
  ["commit", "commit queue"]
]

const byteLabels: ReadonlyArray<readonly ["received" | "stored" | "committed", string]> = [
  ["received", "received"],
  ["stored", "stored"],
  ["committed", "committed"]
]

const MiB = 1024 * 1024

/** The original's progress line: `    75.00%, 60 of 80 object have been migrated, ETA: <time> (1h 04m 40s)`. */
export const formatProgressLine = (
  current: StatsSnapshot,
  formatTime: (epochMillis: number) => string = formatLocalTime
): string => {
  const p = progressOf(current)
  const percent = p.percent === undefined ? UNKNOWN : `${toFixedHalfEven(p.percent, 2)}%`
  const eta = p.etaSeconds === undefined
    ? UNKNOWN
    : `${formatTime(current.at + p.etaSeconds * 1000)} (${formatDuration(p.etaSeconds)})`
  return `    ${percent}, ${formatInt(p.migrated)} of ${formatInt(p.total)} object have been migrated, ETA: ${eta}`
}

/**
 * The original's per-group line. Current speed = `(seenNow − seenBefore) / sinceMillis`, average =
 * `seenNow / totalMillis`, both per second; a zero interval prints `UNKNOWN`.
 */
export const formatThreadLine = (
  name: string,
  seenBefore: number,
  seenNow: number,
  sinceMillis: number,
  totalMillis: number
): string =>
  `    ${padRight(name, 17)} - processed: ${formatInt(seenNow, 7)}, ` +
  `current speed: ${formatFixed(ratePerSecond(seenNow - seenBefore, sinceMillis), 7, 1)} Lo/s, ` +
  `average speed: ${formatFixed(ratePerSecond(seenNow, totalMillis), 7, 1)} Lo/s`

/** The original's queue line; a queue missing from the snapshot (or with capacity 0) prints `UNKNOWN`. */
export const formatQueueLine = (
  name: string,
  usedBefore: number,
  now: { readonly used: number; readonly capacity: number } | undefined
): string => {
  const percentFull = now === undefined || now.capacity <= 0 ? undefined : now.used / now.capacity * 100
  return `    ${padRight(name, 17)} - used ${formatInt(now?.used, 6)} of ${formatInt(now?.capacity, 6)}, ` +
    `${formatFixed(percentFull, 6, 2)}% full, ` +
    `changed by: ${formatSigned(now === undefined ? undefined : now.used - usedBefore, 6)}`
}

/** Our data-volume line, in the style of the group lines (speeds in MiB/s, 2 decimals). */
export const formatBytesLine = (
  name: string,
  bytesBefore: number,
  bytesNow: number,
  sinceMillis: number,
  totalMillis: number
): string =>
  `    ${padRight(name, 17)} - volume: ${padLeft(formatBytes(bytesNow), 11)}, ` +
  `current speed: ${formatFixed(ratePerSecond((bytesNow - bytesBefore) / MiB, sinceMillis), 7, 2)} MiB/s, ` +
  `average speed: ${formatFixed(ratePerSecond(bytesNow / MiB, totalMillis), 7, 2)} MiB/s (${bytesNow} bytes)`

/**
 * The whole report as printed: every line ends with `\n` and, like the original, the text ends with
 * an empty line. Write it verbatim (e.g. `process.stdout.write`), not through `console.log`.
 * Speeds of the first report (no `previous`) are measured since the start, queue changes from 0.
 *
 * Layout (original lines first, then ours):
 * ```
 * *******************************************************************
 *     Status at 2017-03-10 10:10:53 (updated every: 10s)          | (final stats)
 *
 * [blank line + "FAILED OBJECTS: N" only when N > 0]
 * Progress Overview:
 *     75.00%, 60 of 80 object have been migrated, ETA: 2017-03-10 11:15:33 (1h 04m 40s)
 *
 * Processed Objects by Thread Groups:
 *     observer thread   - processed:    9752, current speed:   892.7 Lo/s, average speed:   441.7 Lo/s
 *     ... receiver threads, storer threads, committer threads
 *
 * Queue Usage:
 *     receive queue     - used   8192 of   8192, 100.00% full, changed by:  +4235
 *     ... store queue, commit queue
 *
 * Data Volume:
 *     received          - volume:    1.50 GiB, current speed:   12.34 MiB/s, average speed:   10.12 MiB/s (1610612736 bytes)
 *     ... stored, committed
 *
 * [Retried Calls: N  + blank line, only when N > 0]
 * ```
 */
export const formatReport = (input: ReportInput): string => {
  const { current, final, intervalSeconds, previous } = input
  const formatTime = input.formatTime ?? formatLocalTime
  const sinceMillis = current.at - (previous?.at ?? current.startedAt)
  const totalMillis = current.at - current.startedAt
  const lines: Array<string> = []

  lines.push("*".repeat(67))
  lines.push(
    `    Status at ${formatTime(current.at)}${final ? " (final stats)" : ` (updated every: ${intervalSeconds}s)`}`
  )
  lines.push("")
  if (current.failed > 0) lines.push("", `FAILED OBJECTS: ${current.failed}`)

  lines.push("Progress Overview:", formatProgressLine(current, formatTime), "")

  lines.push("Processed Objects by Thread Groups:")
  for (const [stage, label] of stageGroups) {
    lines.push(formatThreadLine(label, previous?.processed[stage] ?? 0, current.processed[stage], sinceMillis, totalMillis))
  }
  lines.push("")

  lines.push("Queue Usage:")
  for (const [name, label] of queueLabels) {
    const usedBefore = previous?.queues.find((q) => q.name === name)?.used ?? 0
    lines.push(formatQueueLine(label, usedBefore, current.queues.find((q) => q.name === name)))
  }
  lines.push("")

  // --- our additions, after everything the original printed ---
  lines.push("Data Volume:")
  for (const [key, label] of byteLabels) {
    lines.push(formatBytesLine(label, previous?.bytes[key] ?? 0, current.bytes[key], sinceMillis, totalMillis))
  }
  lines.push("")
  if (current.retries > 0) lines.push(`Retried Calls: ${current.retries}`, "")

  return lines.map((line) => `${line}\n`).join("")
}

// ---------------------------------------------------------------------------------------------
// Effectful part
// ---------------------------------------------------------------------------------------------

export interface MonitorOptions {
  /** time between reports (the original's `--monitor-interval`, default 10 s) */
  readonly interval: Duration.Input
  /** receives each report's text (ends with a newline); write it verbatim */
  readonly write: (text: string) => Effect.Effect<void>
  /** defaults to local time */
  readonly formatTime?: ((epochMillis: number) => string) | undefined
}

export interface Monitor {
  /**
   * Forever: sleep `interval`, snapshot, write a report. Never ends on its own; fork it in a scope
   * (`Effect.forkScoped` / `forkChild`) and interrupt it when the pipeline is done.
   */
  readonly loop: Effect.Effect<never>
  /**
   * One last report with `(final stats)`, speeds measured since the loop's last report.
   * Run it after the loop was interrupted.
   */
  readonly final: Effect.Effect<void>
}

/** A monitor whose periodic loop and final report share the previous snapshot. */
export const makeMonitor = Effect.fn("Monitor.make")(function*(options: MonitorOptions) {
  const stats = yield* Stats
  const previous = yield* Ref.make<StatsSnapshot | undefined>(undefined)
  const intervalSeconds = Math.floor(Duration.toSeconds(options.interval))

  // Uninterruptible: interrupting the loop never cuts a report short or loses its snapshot.
  const report = (final: boolean) =>
    Effect.uninterruptible(Effect.gen(function*() {
      const current = yield* stats.snapshot
      const before = yield* Ref.get(previous)
      yield* options.write(formatReport({ previous: before, current, intervalSeconds, final, formatTime: options.formatTime }))
      yield* Ref.set(previous, current)
    }))

  const monitor: Monitor = {
    loop: Effect.forever(Effect.andThen(Effect.sleep(options.interval), report(false))),
    final: report(true)
  }
  return monitor
})

/** The periodic loop of a fresh monitor (no final report); never ends on its own. */
export const reportEvery = (options: MonitorOptions): Effect.Effect<never, never, Stats> =>
  Effect.flatMap(makeMonitor(options), (monitor) => monitor.loop)
