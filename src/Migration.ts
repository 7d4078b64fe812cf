/**
 * A whole migration run: pre-flight checks, the pipeline, the monitor, the summary, finalize.
 *
 * Order matters for the exit codes: everything that can be refused (settings, connection, schema,
 * batch job, bucket) is checked before any object is read, and fails with exit code 2.
 */
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Layer, Option, Redacted, Ref } from "effect"
import { DatabaseUnavailable, describeCause, type MigrateError, RowsFailed, SettingsError } from "./domain/Errors.ts"
import type { RowFailure } from "./domain/LargeObject.ts"
import { type Settings, type SettingsInput, validate } from "./domain/Settings.ts"
import { Failures } from "./pipeline/Failures.ts"
import { makeMonitor } from "./pipeline/Monitor.ts"
import * as Pipeline from "./pipeline/Pipeline.ts"
import { defaultPolicy } from "./pipeline/Retry.ts"
import { Stats } from "./pipeline/Stats.ts"
import { makeTracker } from "./pipeline/Watermark.ts"
import { stagingView } from "./source/Staged.ts"
import * as WatermarkTable from "./source/WatermarkTable.ts"
import { Staging } from "./store/StagingStore.ts"
import * as Nice2 from "./source/Nice2.ts"
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
}

export interface RunOptions {
  /** where the periodic and final reports go */
  readonly report: (text: string) => Effect.Effect<void>
  /** true once a graceful stop was asked for */
  readonly stopping?: Effect.Effect<boolean> | undefined
  /** migrate at most this many objects */
  readonly limit?: number | undefined
  /** keep and use the resume watermark (default true; ignored in deferred mode) */
  readonly watermark?: boolean | undefined
}

/** How often the resume watermark is written while a run goes on. */
export const watermarkFlushEvery = "1 second"

/**
 * The services a run needs, built from its settings. Building it can fail with the driver's SqlError
 * (the pool connects eagerly): `provideTo` turns that into a DatabaseUnavailable.
 */
export const layer = <E = never>(
  settings: Settings,
  /** the object store; default S3 (the deferred mode passes the staging store) */
  storeLayer?: Layer.Layer<ObjectStore, E, Stats>
) => {
  const retry = defaultPolicy(settings.retries)
  const pg = PgClient.layer({
    url: settings.pgUrl,
    // receivers and committers each hold one connection at a time; +2 for the observer and the counter
    maxConnections: settings.receiverThreads + settings.committerThreads + 2,
    connectTimeout: "10 seconds",
    applicationName: "lo-migrate"
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
  return Layer.mergeAll(Nice2.layer(retry), storeLayer ?? store, Failures.layer).pipe(
    Layer.provideMerge(pg),
    Layer.provideMerge(Stats.layer)
  )
}

/** Provides `layer(settings)`; a connection failure while building it is a setup problem (exit 2). */
export const provideTo = <LE = never>(settings: Settings, storeLayer?: Layer.Layer<ObjectStore, LE, Stats>) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(layer(settings, storeLayer)),
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
    // the deferred mode: objects go to the staging store, rows already staged are skipped, none is marked
    const staging = yield* Effect.serviceOption(Staging)
    if (Option.isSome(staging) && settings.finalize) {
      return yield* new SettingsError({ setting: "--finalize", problem: "cannot be used with --deferred-blobs (no row is marked before upload-blobs)" })
    }

    // pre-flight: refuse before any work
    yield* checkConnection(describeUrl(Redacted.value(settings.pgUrl)))
    yield* source.prepare
    yield* store.probe

    const totals = yield* source.count
    yield* stats.setTotals(totals)
    yield* Effect.logInfo(
      `${source.table}: ${totals.remaining} of ${totals.total} row(s) to migrate into ${store.target}`
    )

    // The resume watermark: a run starts after the key an interrupted run had finished up to, and
    // records its own every second and at its end; a run that lists everything clears it.
    const retry = defaultPolicy(settings.retries)
    const table = Option.isNone(staging) && options.watermark !== false
      ? yield* WatermarkTable.open(source.table, retry)
      : Option.none()
    const start = Option.isSome(table) ? Option.getOrUndefined(yield* table.value.read) : undefined
    if (start !== undefined) {
      yield* Effect.logInfo(`resuming after ${start}: an earlier run finished every row up to it (${WatermarkTable.tableName})`)
    }
    const tracker = makeTracker()
    let flushed = start
    const flush = Option.isNone(table) ? Effect.void : Effect.suspend(() => {
      const current = tracker.current()
      if (current === undefined || current === flushed) return Effect.void
      return Effect.andThen(table.value.write(current), Effect.sync(() => {
        flushed = current
      }))
    })
    const stopping = options.stopping ?? Effect.succeed(false)

    const monitor = yield* makeMonitor({ interval: `${settings.interval} seconds`, write: options.report })
    const pipeline = Pipeline.run({ ...settings, limit: options.limit, start, progress: tracker }, stopping)
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Effect.forkScoped(monitor.loop)
      if (Option.isSome(table)) {
        yield* Effect.forkScoped(Effect.repeat(Effect.delay(flush, watermarkFlushEvery), { while: () => true }).pipe(
          Effect.catch((error) => Effect.logWarning(`cannot record the watermark: ${error.message}`))
        ))
      }
      yield* Option.isSome(staging)
        ? Effect.provideService(pipeline, Source, stagingView(source, staging.value.isStaged))
        : pipeline
    })).pipe(
      // the last position is kept even when the run fails or is interrupted (never on SIGKILL: then the
      // one written up to a second before serves, which is only lower, never wrong)
      Effect.ensuring(flush.pipe(Effect.catch((error) => Effect.logWarning(`cannot record the watermark: ${error.message}`)))),
      Effect.ensuring(monitor.final)
    )

    const end = yield* stats.snapshot
    const summary: Summary = {
      migrated: end.processed.committer,
      failed: end.failed,
      bytes: end.bytes.committed,
      alreadyMigrated: totals.total - totals.remaining,
      total: totals.total,
      durationMs: end.at - end.startedAt,
      failures: yield* failures.list,
      finalized: false
    }
    // every row was listed and none failed: the next run starts from the beginning again
    if (Option.isSome(table) && summary.failed === 0 && options.limit === undefined && !(yield* stopping)) {
      yield* table.value.clear
    }
    if (summary.failed > 0) return summary
    if (!settings.finalize) return summary
    yield* source.finalize
    return { ...summary, finalized: true }
  })

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
