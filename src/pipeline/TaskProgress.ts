/**
 * Progress of a task with a known (or unknown) total: verify, prune, plan's sampling, upload-blobs and
 * zodb-convert's verify and upload. The task keeps its own counts; this module reads them through the
 * `state` given to `watch` and shows them in one of the three forms migrate has (`--progress`):
 * - tty: a bar with percent, done of total, rates and ETA, redrawn in place on stderr (ProgressDisplay's
 *   screen: log lines stay above it);
 * - plain: one line on stderr every interval and a last one at the end, e.g.
 *   `verify: 1,234 of 5,000 objects (24.7%), 3.40 MiB of 13.10 MiB, 55.1/s, ETA 0h 01m 08s, 0 bad; checkpoint …`;
 * - json: one JSON object a line on stdout (`started`, `progress` every interval, the task's own events
 *   such as `bad`, and last `summary`), and nothing else there: the lines a task prints for people
 *   (`out`) go to stderr instead.
 *
 * A total is never made up: unknown (not counted, or not countable cheaply) it shows as `?`, with no
 * percent and no ETA; once the task has done more than its counted total (rows added meanwhile), the
 * count is stale and shows as `?` as well. A task that completes has done exactly its total, so the
 * last frame, line and event say done of done, 100%.
 *
 * Everything that computes or formats is a pure function of readings (`numbers`, `plainLine`,
 * `ttyLines`, `jsonEvent`); `make` only reads the state, sleeps and writes.
 */
import { Cause, Clock, Console, type Duration, Effect, Exit } from "effect"
import { writeStderr, writeStdout } from "../core/Output.ts"
import { formatBytes, formatDuration } from "./Monitor.ts"
import { bar, count, fit, type Part, perSecond, rateWindow, screen } from "./ProgressDisplay.ts"

/** What a task has done and has to do, read at one instant. */
export interface TaskState {
  /** units (objects, lines, transactions) done so far, whatever their outcome */
  readonly done: number
  /** the bytes of those units; undefined for a task that does not count bytes */
  readonly bytes?: number | undefined
  /** units to do in all (this run); undefined when not known */
  readonly total: number | undefined
  /** their bytes; undefined when not known */
  readonly totalBytes?: number | undefined
  /** the task has done everything it set out to do: its total is what it did */
  readonly complete?: boolean | undefined
  /** units that failed (bad objects, failed lines): the summary's outcome is "failed" when above 0 */
  readonly failed?: number | undefined
  /** the task's own words after the numbers, e.g. `0 bad; checkpoint 0a1b…` */
  readonly detail?: string | undefined
  /** the task's own fields of each JSON event */
  readonly fields?: Readonly<Record<string, unknown>> | undefined
}

/** A reading: the state and when it was taken. */
export interface Reading {
  readonly at: number
  readonly state: TaskState
}

export interface Numbers {
  /** the total as shown: undefined when unknown or exceeded */
  readonly total: number | undefined
  readonly totalBytes: number | undefined
  /** done of total in percent (100 for a total of 0); undefined without a total */
  readonly percent: number | undefined
  readonly objectsPerSecond: number
  readonly bytesPerSecond: number
  /** seconds left at the current rate; undefined without a total or a rate */
  readonly etaSeconds: number | undefined
  readonly elapsedSeconds: number
}

/** A count that the task has gone past is stale: unknown rather than wrong. */
const shownTotal = (done: number, total: number | undefined, complete: boolean): number | undefined =>
  complete ? done : total === undefined || done > total ? undefined : total

/**
 * The numbers of `current`; rates against `earlier` (undefined: since `startedAt`), or since the start
 * on the `final` reading.
 */
export const numbers = (current: Reading, startedAt: number, earlier?: Reading | undefined, final = false): Numbers => {
  const s = current.state
  const complete = s.complete === true
  const total = shownTotal(s.done, s.total, complete)
  const totalBytes = s.bytes === undefined ? undefined : shownTotal(s.bytes, s.totalBytes, complete)
  const base = final ? undefined : earlier
  const since = current.at - (base?.at ?? startedAt)
  const objectsPerSecond = perSecond(s.done - (base?.state.done ?? 0), since)
  const bytesPerSecond = perSecond((s.bytes ?? 0) - (base?.state.bytes ?? 0), since)
  const percent = total === undefined ? undefined : total === 0 ? 100 : (s.done / total) * 100
  const left = total === undefined ? undefined : total - s.done
  return {
    total,
    totalBytes,
    percent,
    objectsPerSecond,
    bytesPerSecond,
    etaSeconds: left === undefined ? undefined : left === 0 ? 0 : objectsPerSecond > 0 ? left / objectsPerSecond : undefined,
    elapsedSeconds: Math.max(0, (current.at - startedAt) / 1000)
  }
}

/** How a task names itself and its units. */
export interface TaskName {
  /** the label lines start with, e.g. "verify" */
  readonly task: string
  /** what it counts, plural: "objects", "lines", "transactions" */
  readonly unit: string
}

const ofTotal = (done: string, total: number | undefined, show: (n: number) => string) =>
  `${done} of ${total === undefined ? "?" : show(total)}`

/** `1,234 of 5,000 objects (24.7%), 3.40 MiB of 13.10 MiB`: the done-of-total part of every form. */
const doneOfTotal = (name: TaskName, s: TaskState, n: Numbers): string =>
  `${ofTotal(count(s.done), n.total, count)} ${name.unit}${n.percent === undefined ? "" : ` (${n.percent.toFixed(1)}%)`}` +
  (s.bytes === undefined ? "" : `, ${ofTotal(formatBytes(s.bytes), n.totalBytes, formatBytes)}`)

const rateText = (n: Numbers) => `${n.objectsPerSecond.toFixed(1)}/s`

/**
 * The plain form: `verify: 1,234 of 5,000 objects (24.7%), 3.40 MiB of 13.10 MiB, 55.1/s, ETA 0h 01m 08s,
 * 0 bad; checkpoint …`; the final one says how long it took instead of the ETA.
 */
export const plainLine = (name: TaskName, current: Reading, startedAt: number, earlier?: Reading, final = false): string => {
  const n = numbers(current, startedAt, earlier, final)
  const eta = final
    ? `in ${formatDuration(n.elapsedSeconds)}`
    : n.etaSeconds === undefined
    ? "ETA ?"
    : `ETA ${formatDuration(n.etaSeconds)}`
  const detail = current.state.detail
  return `${name.task}: ${doneOfTotal(name, current.state, n)}, ${rateText(n)}, ${eta}${detail === undefined || detail === "" ? "" : `, ${detail}`}`
}

export interface TtyOptions {
  /** terminal columns; every line is cut to fit */
  readonly width: number
  readonly color: boolean
  readonly final: boolean
}

/**
 * The TTY form, two lines: the bar (empty while the total is unknown) with percent, done of total and
 * ETA ("done" at the end); then rates, elapsed time and the task's own words.
 */
export const ttyLines = (
  name: TaskName,
  current: Reading,
  startedAt: number,
  earlier: Reading | undefined,
  options: TtyOptions
): ReadonlyArray<string> => {
  const { color, final, width } = options
  const n = numbers(current, startedAt, earlier, final)
  const s = current.state
  const barCells = Math.max(10, Math.min(40, width - 60))
  const eta = final ? (s.complete === true ? "done" : "stopped") : n.etaSeconds === undefined ? "ETA --" : `ETA ${formatDuration(n.etaSeconds)}`
  const failed = s.failed ?? 0
  const head: ReadonlyArray<Part> = [
    { text: `${name.task} `, style: "label" },
    { text: "[" },
    ...bar(n.percent === undefined ? 0 : n.percent / 100, barCells),
    { text: "] " },
    { text: `${n.percent === undefined ? "    ?" : n.percent.toFixed(1).padStart(5)}%  ` },
    { text: `${doneOfTotal(name, s, { ...n, percent: undefined })}  ` },
    { text: eta }
  ]
  const rates: ReadonlyArray<Part> = [
    { text: "  rate    ", style: "label" },
    { text: `${count(n.objectsPerSecond)} ${name.unit}/s${s.bytes === undefined ? "" : `, ${formatBytes(Math.round(n.bytesPerSecond))}/s`}   ` },
    { text: `elapsed ${formatDuration(n.elapsedSeconds)}` },
    ...(s.detail === undefined || s.detail === "" ? [] : [{ text: "   " }, { text: s.detail, style: failed > 0 ? "bad" as const : undefined }])
  ]
  return [fit(head, width, color), fit(rates, width, color)]
}

export type Outcome = "success" | "failed" | "error" | "interrupted"

/**
 * The JSON form of a reading: `{"event":"progress"|"summary","task",…,"done","total","percent",
 * "etaSeconds","bytes","totalBytes",…}` with the task's own fields; unknown values are null.
 */
export const jsonEvent = (
  event: "progress" | "summary",
  name: TaskName,
  current: Reading,
  startedAt: number,
  earlier?: Reading,
  end?: { readonly outcome: Outcome; readonly error?: string | undefined }
): Record<string, unknown> => {
  const n = numbers(current, startedAt, earlier, event === "summary")
  const s = current.state
  return {
    event,
    task: name.task,
    at: new Date(current.at).toISOString(),
    elapsedMs: current.at - startedAt,
    ...(end === undefined ? {} : { outcome: end.outcome, ...(end.error === undefined ? {} : { error: end.error }) }),
    unit: name.unit,
    done: s.done,
    total: n.total ?? null,
    percent: n.percent === undefined ? null : Math.round(n.percent * 100) / 100,
    etaSeconds: event === "summary" || n.etaSeconds === undefined ? null : Math.round(n.etaSeconds),
    ...(s.bytes === undefined ? {} : { bytes: s.bytes, totalBytes: n.totalBytes ?? null }),
    perSecond: Math.round(n.objectsPerSecond * 10) / 10,
    ...(s.bytes === undefined ? {} : { bytesPerSecond: Math.round(n.bytesPerSecond) }),
    failed: s.failed ?? 0,
    ...s.fields
  }
}

const jsonLine = (event: Record<string, unknown>) => `${JSON.stringify(event)}\n`

export type Mode = "tty" | "plain" | "json"

/** Where the forms go; the process's own streams unless a test gives others. */
export interface Io {
  readonly stdout: (text: string) => Effect.Effect<void>
  readonly stderr: (text: string) => Effect.Effect<void>
  /** stdout is the terminal the TTY form draws on: its lines must go above the bar */
  readonly stdoutIsTty: boolean
  /** terminal width, read at each frame */
  readonly columns: () => number
  readonly color: boolean
}

export const processIo = (color: boolean): Io => ({
  stdout: writeStdout,
  stderr: writeStderr,
  stdoutIsTty: process.stdout.isTTY === true,
  columns: () => process.stderr.columns || 80,
  color
})

export interface TaskOptions extends TaskName {
  readonly mode: Mode
  /** time between plain lines and JSON events (the TTY form redraws about four times a second) */
  readonly interval: Duration.Input
  readonly io: Io
  /** time between TTY frames (default 250 ms) */
  readonly redraw?: Duration.Input | undefined
}

/**
 * Runs `work` with the progress shown, `state` read at each frame, line or event: `started` first
 * (json), then frames, lines or events until it ends, and a last one whatever its outcome (json:
 * `summary`, with `outcome` and `error`). On a terminal, log lines written meanwhile go above the bar.
 */
export type Watch = <A, E, R>(state: Effect.Effect<TaskState>, work: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

export interface Task {
  readonly watch: Watch
  /**
   * A line for people (a bad object, the summary): stdout, above the bar on a terminal; in the json form
   * stderr, and `event` (if given) to stdout as `{"event":…,"task":…,…}`.
   */
  readonly out: (text: string, event?: JsonFields) => Effect.Effect<void>
  /** An event of the json form only (where the text is printed elsewhere), e.g. a failed line. */
  readonly event: (event: JsonFields) => Effect.Effect<void>
}

export type JsonFields = { readonly event: string } & Readonly<Record<string, unknown>>

const errorText = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)

export const make = (options: TaskOptions): Task => {
  const { io, mode } = options
  const name: TaskName = { task: options.task, unit: options.unit }
  const live = mode === "tty" ? screen(io.stderr) : undefined

  const event: Task["event"] = (fields) => (mode === "json" ? io.stdout(jsonLine({ ...fields, task: name.task })) : Effect.void)
  const out: Task["out"] = (text, fields) => {
    const line = text.endsWith("\n") ? text : `${text}\n`
    if (mode === "json") return fields === undefined ? io.stderr(line) : Effect.andThen(io.stderr(line), event(fields))
    if (live !== undefined && io.stdoutIsTty) return live.above(line, io.stdout)
    return io.stdout(line)
  }

  const watch: Watch = (state, work) =>
    Effect.flatMap(Clock.currentTimeMillis, (startedAt) => {
      const read = Effect.zipWith(Clock.currentTimeMillis, state, (at, s): Reading => ({ at, state: s }))
      let previous: Reading | undefined
      const earlierThan = rateWindow<Reading>("5 seconds")
      const show = (final: boolean, exit?: Exit.Exit<unknown, unknown>) =>
        Effect.flatMap(read, (current) => {
          switch (mode) {
            case "tty": {
              const lines = ttyLines(name, current, startedAt, earlierThan(current), {
                width: Math.max(20, io.columns() - 1),
                color: io.color,
                final
              })
              return live!.draw(lines, final)
            }
            case "plain": {
              const line = plainLine(name, current, startedAt, previous, final)
              previous = current
              return io.stderr(`${line}\n`)
            }
            case "json": {
              const end = exit === undefined
                ? undefined
                : Exit.isSuccess(exit)
                ? { outcome: (current.state.failed ?? 0) > 0 ? "failed" as const : "success" as const }
                : Cause.hasInterruptsOnly(exit.cause)
                ? { outcome: "interrupted" as const }
                : { outcome: "error" as const, error: errorText(Cause.squash(exit.cause)) }
              const event = jsonEvent(final ? "summary" : "progress", name, current, startedAt, previous, end)
              previous = current
              return io.stdout(jsonLine(event))
            }
          }
        })
      const every = mode === "tty" ? options.redraw ?? "250 millis" : options.interval
      const loop = mode === "tty"
        ? Effect.forever(Effect.andThen(show(false), Effect.sleep(every)))
        : Effect.forever(Effect.andThen(Effect.sleep(every), show(false)))
      const started = mode !== "json" ? Effect.void : Effect.flatMap(state, (s) =>
        io.stdout(jsonLine({
          event: "started",
          task: name.task,
          at: new Date(startedAt).toISOString(),
          unit: name.unit,
          total: s.total ?? null,
          ...(s.bytes === undefined ? {} : { totalBytes: s.totalBytes ?? null }),
          ...s.fields
        })))
      const run = Effect.andThen(
        started,
        Effect.scoped(Effect.andThen(Effect.forkScoped(loop), work)).pipe(
          Effect.onExit((exit) => Effect.uninterruptible(show(true, exit)))
        )
      )
      // on a terminal, log lines written meanwhile go above the bar
      return live === undefined ? run : Effect.provideService(run, Console.Console, live.console)
    })

  return { watch, out, event }
}
