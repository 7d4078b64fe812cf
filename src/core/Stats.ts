/**
 * The single source of truth for progress: counts per stage, bytes, failures and queue fill.
 * Every display (monitor report, JSON progress, metrics, final summary) reads a snapshot from here;
 * none keeps counters of its own.
 */
import { Clock, Context, Effect, Layer } from "effect"

export type StageName = "observer" | "receiver" | "storer" | "committer"
export type QueueName = "receive" | "store" | "commit"

export interface QueueFill {
  readonly name: QueueName
  readonly used: number
  readonly capacity: number
}

export interface StatsSnapshot {
  /** epoch milliseconds when the snapshot was taken */
  readonly at: number
  /** epoch milliseconds when the run started */
  readonly startedAt: number
  /** objects that left each stage successfully */
  readonly processed: Readonly<Record<StageName, number>>
  /** bytes read from PostgreSQL, stored in S3, and committed (row marked) */
  readonly bytes: Readonly<{ received: number; stored: number; committed: number }>
  /** rows that failed (skipped) in any stage */
  readonly failed: number
  /** retried calls (S3, PostgreSQL) */
  readonly retries: number
  /** rows still to migrate when the run started; undefined until counted */
  readonly remaining: number | undefined
  /** rows in the table when the run started; undefined until counted */
  readonly total: number | undefined
  readonly queues: ReadonlyArray<QueueFill>
}

export class Stats extends Context.Service<Stats, {
  readonly processed: (stage: StageName, bytes?: number) => Effect.Effect<void>
  readonly failed: Effect.Effect<void>
  readonly retried: Effect.Effect<void>
  readonly setTotals: (totals: { readonly remaining: number; readonly total: number }) => Effect.Effect<void>
  readonly trackQueue: (name: QueueName, capacity: number, size: Effect.Effect<number>) => Effect.Effect<void>
  readonly snapshot: Effect.Effect<StatsSnapshot>
}>()("lo-migrate/pipeline/Stats") {
  static readonly layer = Layer.effect(
    Stats,
    Effect.gen(function*() {
      const startedAt = yield* Clock.currentTimeMillis
      // Plain mutable counters: fibers run on one JS thread, so increments never race.
      const processed: Record<StageName, number> = { observer: 0, receiver: 0, storer: 0, committer: 0 }
      const bytes = { received: 0, stored: 0, committed: 0 }
      const counters = { failed: 0, retries: 0 }
      let totals: { remaining: number; total: number } | undefined
      const queues: Array<{ name: QueueName; capacity: number; size: Effect.Effect<number> }> = []

      const bytesKey = { observer: undefined, receiver: "received", storer: "stored", committer: "committed" } as const

      return Stats.of({
        processed: (stage, n = 0) =>
          Effect.sync(() => {
            processed[stage] += 1
            const key = bytesKey[stage]
            if (key !== undefined) bytes[key] += n
          }),
        failed: Effect.sync(() => {
          counters.failed += 1
        }),
        retried: Effect.sync(() => {
          counters.retries += 1
        }),
        setTotals: (t) =>
          Effect.sync(() => {
            totals = { ...t }
          }),
        trackQueue: (name, capacity, size) =>
          Effect.sync(() => {
            queues.push({ name, capacity, size })
          }),
        snapshot: Effect.gen(function*() {
          const at = yield* Clock.currentTimeMillis
          const fills = yield* Effect.forEach(queues, (q) =>
            Effect.map(q.size, (used): QueueFill => ({ name: q.name, used: Math.max(0, used), capacity: q.capacity })))
          return {
            at,
            startedAt,
            processed: { ...processed },
            bytes: { ...bytes },
            failed: counters.failed,
            retries: counters.retries,
            remaining: totals?.remaining,
            total: totals?.total,
            queues: fills
          }
        })
      })
    })
  )
}
