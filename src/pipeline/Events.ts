/**
 * Typed progress events of a run: what the library's `Migration.events` stream carries and what
 * `--progress json` writes, one JSON object a line. All counts come from Stats snapshots.
 */
import type { RowFailure } from "../domain/LargeObject.ts"
import type { StatsSnapshot } from "../core/Stats.ts"

/** The run has passed its pre-flight checks and knows how many rows it has to migrate. */
export interface Started {
  readonly _tag: "Started"
  readonly table: string
  readonly target: string
  readonly remaining: number
  readonly total: number
}

/** Periodic: the counters of every stage, bytes, failures, retries and queue fill. */
export interface Snapshot {
  readonly _tag: "Snapshot"
  readonly snapshot: StatsSnapshot
}

/** A row was skipped; the run goes on. */
export interface RowFailed {
  readonly _tag: "RowFailed"
  readonly failure: RowFailure
}

/** The last event of a run, whatever its outcome. */
export interface Finished {
  readonly _tag: "Finished"
  /** "success": every listed row migrated; "rows-failed": some skipped; "error": the run failed */
  readonly outcome: "success" | "rows-failed" | "error" | "interrupted"
  readonly migrated: number
  readonly failed: number
  readonly bytes: number
  readonly durationMs: number
  /** the error's message when outcome is "error" */
  readonly error?: string | undefined
}

export type ProgressEvent = Started | Snapshot | RowFailed | Finished

export const isFinished = (event: ProgressEvent): event is Finished => event._tag === "Finished"

/** Builds the final event from the last snapshot. */
export const finished = (
  snapshot: StatsSnapshot,
  outcome: Finished["outcome"],
  error?: string
): Finished => ({
  _tag: "Finished",
  outcome,
  migrated: snapshot.processed.committer,
  failed: snapshot.failed,
  bytes: snapshot.bytes.committed,
  durationMs: snapshot.at - snapshot.startedAt,
  ...(error === undefined ? {} : { error })
})

/**
 * The JSON form of an event (`--progress json`): a flat object with `event` naming its kind, times as
 * ISO strings, no `_tag`. Stable field names: scripts parse these.
 */
export const toJson = (event: ProgressEvent): Record<string, unknown> => {
  switch (event._tag) {
    case "Started":
      return { event: "started", table: event.table, target: event.target, remaining: event.remaining, total: event.total }
    case "Snapshot": {
      const s = event.snapshot
      return {
        event: "snapshot",
        at: new Date(s.at).toISOString(),
        elapsedMs: s.at - s.startedAt,
        remaining: s.remaining ?? null,
        total: s.total ?? null,
        processed: s.processed,
        bytes: s.bytes,
        migrated: s.processed.committer,
        failed: s.failed,
        retries: s.retries,
        queues: Object.fromEntries(s.queues.map((q) => [q.name, { used: q.used, capacity: q.capacity }]))
      }
    }
    case "RowFailed":
      return { event: "row-failed", ...event.failure }
    case "Finished":
      return {
        event: "summary",
        outcome: event.outcome,
        migrated: event.migrated,
        failed: event.failed,
        bytes: event.bytes,
        durationMs: event.durationMs,
        ...(event.error === undefined ? {} : { error: event.error })
      }
  }
}

export const toJsonLine = (event: ProgressEvent): string => `${JSON.stringify(toJson(event))}\n`
