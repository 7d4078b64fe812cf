/**
 * A whole migration run: pre-flight checks, the pipeline, the monitor, the summary, finalize.
 *
 * Order matters for the exit codes: everything that can be refused (settings, connection, schema,
 * batch job, bucket) is checked before any object is read, and fails with exit code 2.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Redacted, Ref } from "effect"
import { DatabaseUnavailable, describeCause, type MigrateError, RowsFailed } from "./domain/Errors.ts"
import type { RowFailure } from "./domain/LargeObject.ts"
import { type Settings, type SettingsInput, validate } from "./domain/Settings.ts"
import { Failures } from "./pipeline/Failures.ts"
import { makeMonitor } from "./pipeline/Monitor.ts"
import * as Payload from "./pipeline/Payload.ts"
import * as Pipeline from "./pipeline/Pipeline.ts"
import { defaultPolicy } from "./pipeline/Retry.ts"
import { Stats } from "./pipeline/Stats.ts"
import * as Nice2 from "./source/Nice2.ts"
import * as PgTls from "./source/PgTls.ts"
import * as RunLock from "./source/RunLock.ts"
import { checkConnection, describeUrl, Source } from "./source/Source.ts"
import { ObjectStore } from "./store/ObjectStore.ts"
import * as S3Store from "./store/S3Store.ts"

/** Parts of one multipart upload in flight at once. */
export const partConcurrency = 4

export interface Summary {
  /** rows marked by this run */
  readonly migrated: number
  /** rows skipped by this run (named in `failures`, up to a bound) */
  readonly failed: number
  /** bytes of the objects marked by this run */
  readonly bytes: number
  /** rows that were already migrated when the run started */
  readonly alreadyMigrated: number
  /** rows in the table when the run started */
  readonly total: number
  readonly durationMs: number
  readonly failures: ReadonlyArray<RowFailure>
  /** true when --finalize ran */
  readonly finalized: boolean
  /** true when the run was asked to stop (signal, `Migration.stop`, lost run lock) before its end */
  readonly stopped: boolean
}

export interface RunOptions {
  /** where the periodic and final reports go */
  readonly report: (text: string) => Effect.Effect<void>
  /** true once a graceful stop was asked for */
  readonly stopping?: Effect.Effect<boolean> | undefined
  /** migrate at most this many objects */
  readonly limit?: number | undefined
}

/**
 * The services a run needs, built from its settings. Building it can fail with the driver's SqlError
 * (the pool connects eagerly): `provideTo` turns that into a DatabaseUnavailable.
 */
export const layer = (settings: Settings) => {
  const retry = defaultPolicy(settings.retries)
  const pg = PgClient.layer({
    url: settings.pgUrl,
    // receivers and committers each hold one connection at a time; +2 for the observer and the counter,
    // +1 reserved for the run lock's session
    maxConnections: settings.receiverThreads + settings.committerThreads + 3,
    connectTimeout: "10 seconds",
    applicationName: "lo-migrate",
    ...PgTls.options(settings.pgCa)
  })
  const store = S3Store.layer({
    endpoint: settings.s3Url,
    region: settings.region,
    bucket: settings.bucket,
    pathStyle: settings.pathStyle,
    accessKey: settings.accessKey,
    secretKey: settings.secretKey,
    partSize: settings.uploadChunkSize,
    partConcurrency,
    connections: settings.storerThreads * partConcurrency,
    retry
  })
  return Layer.mergeAll(Nice2.layer(retry), store, Failures.layerTo(settings.failuresFile)).pipe(
    Layer.provideMerge(pg),
    Layer.provideMerge(Stats.layer)
  )
}

/** Provides `layer(settings)`; a connection failure while building it is a setup problem (exit 2). */
export const provideTo = (settings: Settings) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(layer(settings)),
    Effect.catchTag("SqlError", (error) =>
      Effect.fail(
        new DatabaseUnavailable({
          problem: `cannot connect to ${describeUrl(Redacted.value(settings.pgUrl))}: ${describeCause(error)}`
        })
      ))
  )

/** Runs one migration with the services of `layer(settings)`. */
export const run = (settings: Settings, options: RunOptions) =>
  Effect.gen(function*() {
    const source = yield* Source
    const store = yield* ObjectStore
    const stats = yield* Stats
    const failures = yield* Failures

    // pre-flight: refuse before any work
    yield* checkConnection(describeUrl(Redacted.value(settings.pgUrl)))
    // one run at a time per table; losing the lock to another run stops this one gracefully
    const lockLost = yield* Ref.make(false)
    yield* RunLock.acquire(source.table, { onLost: Ref.set(lockLost, true) })
    const askedToStop = options.stopping ?? Effect.succeed(false)
    const stopping = Effect.zipWith(askedToStop, Ref.get(lockLost), (a, b) => a || b)
    yield* source.prepare
    yield* store.probe
    const swept = yield* Payload.sweepOrphans(settings.tempDir)
    if (swept > 0) yield* Effect.logInfo(`removed ${swept} temp file(s) left in ${settings.tempDir} by killed runs`)

    const totals = yield* source.count
    yield* stats.setTotals(totals)
    yield* Effect.logInfo(
      `${source.table}: ${totals.remaining} of ${totals.total} row(s) to migrate into ${store.target}`
    )

    const monitor = yield* makeMonitor({ interval: `${settings.interval} seconds`, write: options.report })
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Effect.forkScoped(monitor.loop)
      yield* Pipeline.run({ ...settings, limit: options.limit }, stopping)
    })).pipe(Effect.ensuring(monitor.final))

    const end = yield* stats.snapshot
    const summary: Summary = {
      migrated: end.processed.committer,
      failed: end.failed,
      bytes: end.bytes.committed,
      alreadyMigrated: totals.total - totals.remaining,
      total: totals.total,
      durationMs: end.at - end.startedAt,
      failures: yield* failures.list,
      finalized: false,
      stopped: yield* stopping
    }
    if (summary.failed > 0 || summary.stopped) return summary
    if (!settings.finalize) return summary
    yield* source.finalize
    return { ...summary, finalized: true }
  }).pipe(Effect.scoped)

/**
 * The library face of a migration: `Migration.layer(options)` validates the options and offers `run`,
 * which fails with `RowsFailed` when rows were skipped, and `stop`, which asks a running migration to
 * finish what is in flight and end.
 */
export class Migration extends Context.Service<Migration, {
  readonly settings: Settings
  readonly run: Effect.Effect<Summary, MigrateError>
  readonly stop: Effect.Effect<void>
}>()("lo-migrate/Migration") {
  static readonly layer = (input: SettingsInput & Partial<Pick<RunOptions, "report" | "limit">>) =>
    Layer.effect(
      Migration,
      Effect.gen(function*() {
        const settings = yield* validate(input)
        const stopping = yield* Ref.make(false)
        const report = input.report ?? ((text: string) => Effect.logInfo(text))
        return Migration.of({
          settings,
          stop: Ref.set(stopping, true),
          run: Effect.scoped(
            run(settings, { report, stopping: Ref.get(stopping), limit: input.limit }).pipe(provideTo(settings))
          ).pipe(
            Effect.flatMap((summary) =>
              summary.failed > 0 ? Effect.fail(new RowsFailed({ failed: summary.failed })) : Effect.succeed(summary)
            )
          )
        })
      })
    )
}
