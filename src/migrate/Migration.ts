/**
 * A whole migration run: pre-flight checks, the pipeline, the monitor, the summary, finalize.
 *
 * Order matters for the exit codes: everything that can be refused (settings, connection, schema,
 * batch job, bucket) is checked before any object is read, and fails with exit code 2.
 */
import { Cause, Context, Deferred, Duration, Effect, Exit, Layer, Option, PubSub, Ref, Stream } from "effect"
import {
  type MigrateError,
  RowsFailed,
  type RunLockLost,
  SettingsError
} from "../domain/Errors.ts"
import type { RowFailure } from "../domain/LargeObject.ts"
import { type Settings, type SettingsInput, validate } from "../domain/Settings.ts"
import { type MetricsServerOptions, serve as serveMetrics } from "../observability/Metrics.ts"
import * as Display from "../pipeline/Display.ts"
import * as Events from "../pipeline/Events.ts"
import * as Connections from "./Connections.ts"
import { Failures } from "../pipeline/Failures.ts"
import * as Payload from "../core/Payload.ts"
import * as Pipeline from "./Pipeline.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import { makeTracker } from "../pipeline/Watermark.ts"
import { stagingView } from "./Staged.ts"
import * as WatermarkTable from "../postgres/WatermarkTable.ts"
import { Staging } from "../s3/StagingStore.ts"
import { shardSuffix } from "../domain/Profile.ts"
import * as Profiles from "../profiles/Profiles.ts"
import * as RunLock from "../postgres/RunLock.ts"
import { CopySource } from "../phases/CopySource.ts"
import { checkConnection, describeUrl, unreachable } from "../postgres/Statement.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import { StopRequest } from "../core/StopRequest.ts"
import * as Verification from "./Verification.ts"

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
  /**
   * deferred mode: of `migrated`, the objects the profile keeps in the database (relstorage's inline
   * blobs), recorded by the staging run itself; the others were staged
   */
  readonly inline?: { readonly objects: number; readonly bytes: number } | undefined
}

export interface RunOptions {
  /** where the periodic and final reports go */
  readonly report: (text: string) => Effect.Effect<void>
  /** true once a graceful stop was asked for */
  readonly stopping?: Effect.Effect<boolean> | undefined
  /** migrate at most this many objects */
  readonly limit?: number | undefined
  /** what watches the run; default: the periodic report written to `report` */
  readonly display?: Display.DisplayFactory | undefined
  /** receives Started, a Snapshot every `eventInterval`, RowFailed for each skipped row, and Finished */
  readonly onEvent?: ((event: Events.ProgressEvent) => Effect.Effect<void>) | undefined
  /** time between Snapshot events; default: `settings.interval` seconds */
  readonly eventInterval?: Duration.Input | undefined
  /** serve Prometheus /metrics for the duration of the run */
  readonly metrics?: MetricsServerOptions | undefined
  /** called once /metrics listens, with the bound port */
  readonly onMetricsListening?: ((port: number) => Effect.Effect<void>) | undefined
  /**
   * take the one-run-at-a-time lock (default true); off only for a database nobody else can reach whose
   * single connection the lock would hold for the whole run (the demo on PGlite)
   */
  readonly runLock?: boolean | undefined
  /** keep and use the resume watermark (default true; ignored in deferred mode) */
  readonly watermark?: boolean | undefined
}

/** Snapshot events every `every` as a Display, so they stop with the pipeline like every other display. */
const snapshotEvents = (
  onEvent: (event: Events.ProgressEvent) => Effect.Effect<void>,
  every: Duration.Input
): Display.DisplayFactory =>
  Effect.gen(function*() {
    const stats = yield* Stats
    const emit = Effect.flatMap(stats.snapshot, (snapshot) => onEvent({ _tag: "Snapshot", snapshot }))
    return { loop: Effect.forever(Effect.andThen(Effect.sleep(every), emit)), final: emit }
  })

/** What a caller may change in the services of a run. */
export interface ServiceOptions<E = never> {
  /** PostgreSQL connections; default: one per receiver and committer, +3. PGlite needs 1. */
  readonly maxConnections?: number | undefined
  /** the object store; default S3 (the deferred mode passes the staging store, tests a faulty one) */
  readonly store?: Layer.Layer<ObjectStore, E, Stats> | undefined
}

/** How often the resume watermark is written while a run goes on. */
export const watermarkFlushEvery = "1 second"

/**
 * The services a run needs, built from its settings. Building it can fail with the driver's SqlError
 * (the pool connects eagerly): `provideTo` turns that into a DatabaseUnavailable.
 */
export const layer = <E = never>(settings: Settings, options: ServiceOptions<E> = {}) => {
  const retry = defaultPolicy(settings.retries)
  // receivers and committers each hold one connection at a time; +2 for the observer and the counter,
  // +1 reserved for the run lock's session
  const pg = Connections.pg(
    settings.pgUrl,
    options.maxConnections ?? settings.receiverThreads + settings.committerThreads + 3,
    settings.pgCa,
    settings.pgTimeout
  )
  const store = Connections.store(settings, settings.maxStorerThreads * partConcurrency, partConcurrency)
  return Layer.mergeAll(Profiles.layer(settings.profile, settings.shard, retry, {
    pgCa: settings.pgCa,
    connections: settings.committerThreads + 2,
    pgTimeout: settings.pgTimeout
  }), options.store ?? store, Failures.layerTo(settings.failuresFile)).pipe(
    Layer.provideMerge(pg),
    Layer.provideMerge(Stats.layer)
  )
}

/** Provides `layer(settings)`; a connection failure while building it is a setup problem (exit 2). */
export const provideTo = <LE = never>(settings: Settings, options: ServiceOptions<LE> = {}) =>
<A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(
    Effect.provide(layer(settings, options)),
    Effect.catchTag("SqlError", (error) =>
      Effect.fail(
        unreachable(describeUrl(settings.pgUrl), "--pg-url", error)
      ))
  )

/** Runs one migration with the services of `layer(settings)`. */
export const run = (settings: Settings, options: RunOptions) =>
  Effect.scoped(Effect.gen(function*() {
    const source = yield* CopySource
    const store = yield* ObjectStore
    const stats = yield* Stats
    const failures = yield* Failures
    const onEvent = options.onEvent
    // the deferred mode: objects go to the staging store, rows already staged are skipped, none is marked
    const staging = yield* Effect.serviceOption(Staging)
    if (Option.isSome(staging) && settings.finalize) {
      return yield* new SettingsError({ setting: "--finalize", problem: "cannot be used with --deferred-blobs (no row is marked before upload-blobs)" })
    }

    if (onEvent !== undefined) {
      yield* failures.listen((failure) => onEvent({ _tag: "RowFailed", failure }))
      // whatever the outcome, the last event says how the run ended
      yield* Effect.addFinalizer((exit) =>
        Effect.flatMap(stats.snapshot, (end) =>
          onEvent(
            Exit.isSuccess(exit)
              ? Events.finished(end, end.failed > 0 ? "rows-failed" : "success")
              : Cause.hasInterruptsOnly(exit.cause)
              ? Events.finished(end, "interrupted")
              : Events.finished(end, "error", errorMessage(Cause.squash(exit.cause)))
          ))
      )
    }

    if (options.metrics !== undefined) {
      const port = yield* serveMetrics(options.metrics)
      if (options.onMetricsListening !== undefined) yield* options.onMetricsListening(port)
    }
    // pre-flight: refuse before any work
    yield* checkConnection(describeUrl(settings.pgUrl))
    // one run at a time per table; losing the lock to another run stops this one gracefully
    const lockLost = yield* Ref.make(false)
    const runKey = yield* source.runKey
    // the lock's session gone for good: the run must not go on without it
    const lockFailed = yield* Deferred.make<never, RunLockLost>()
    if (options.runLock !== false) {
      yield* RunLock.acquire(runKey.lock, {
        onLost: Ref.set(lockLost, true),
        onFailed: (error) => Deferred.fail(lockFailed, error).pipe(Effect.asVoid),
        retry: defaultPolicy(settings.retries),
        shard: source.shard,
        shown: source.table
      })
    }
    const askedToStop = options.stopping ?? Effect.succeed(false)
    const stopping = Effect.zipWith(askedToStop, Ref.get(lockLost), (a, b) => a || b)
    yield* source.prepare
    yield* store.probe
    // ended at once (a second signal while a server does not answer), the process removes its temp files itself
    const stopRequest = yield* Effect.serviceOption(StopRequest)
    if (Option.isSome(stopRequest)) yield* stopRequest.value.atHardStop(() => Payload.removeOwnSync(settings.tempDir))
    const swept = yield* Payload.sweepOrphans(settings.tempDir)
    if (swept > 0) yield* Effect.logInfo(`removed ${swept} temp file(s) left in ${settings.tempDir} by killed runs`)

    const totals = yield* source.count
    yield* stats.setTotals(totals)
    yield* Effect.logInfo(
      `${source.table}${shardSuffix(source.shard)}: ${totals.remaining} of ${totals.total} row(s) to migrate into ${store.target}`
    )

    // The resume watermark: a run starts after the key an interrupted run had finished up to, and
    // records its own every second and at its end; a run that lists everything clears it.
    const retry = defaultPolicy(settings.retries)
    const table = Option.isNone(staging) && options.watermark !== false
      ? yield* WatermarkTable.open(runKey, source.shard, retry)
      : Option.none()
    const start = Option.isSome(table) ? Option.getOrUndefined(yield* table.value.read) : undefined
    if (start !== undefined) {
      yield* Effect.logInfo(`resuming after ${start}: an earlier run finished every row up to it (${WatermarkTable.tableName})`)
    }
    const tracker = makeTracker()
    const inline = { objects: 0, bytes: 0 }
    const countInline = (recorded: ReadonlyArray<{ readonly candidate: { readonly size: number } }>) =>
      Effect.sync(() => {
        inline.objects += recorded.length
        for (const r of recorded) inline.bytes += r.candidate.size
      })
    let flushed = start
    const flush = Option.isNone(table) ? Effect.void : Effect.suspend(() => {
      const current = tracker.current()
      if (current === undefined || current === flushed) return Effect.void
      return Effect.andThen(table.value.write(current), Effect.sync(() => {
        flushed = current
      }))
    })

    if (onEvent !== undefined) {
      yield* onEvent({ _tag: "Started", table: source.table, target: store.target, ...totals })
    }
    const displays = [
      yield* (options.display ?? Display.report({ interval: `${settings.interval} seconds`, write: options.report }))
    ]
    if (onEvent !== undefined) {
      displays.push(yield* snapshotEvents(onEvent, options.eventInterval ?? `${settings.interval} seconds`))
    }
    const monitor = Display.all(displays)
    const pipeline = Pipeline.run({ ...settings, limit: options.limit, start, progress: tracker }, stopping)
    // the watermark is written every second; a write that still fails after its retries ends the run,
    // as any other statement would (going on would silently lose the resume position)
    const flushing = Option.isSome(table) ? Effect.forever(Effect.andThen(Effect.sleep(watermarkFlushEvery), flush)) : Effect.never
    yield* Effect.scoped(Effect.gen(function*() {
      yield* Effect.forkScoped(monitor.loop)
      const flow = Option.isSome(staging)
        ? Effect.provideService(pipeline, CopySource, stagingView(source, staging.value.isStaged, countInline))
        : pipeline
      // whichever ends first ends the others: the pipeline (done or failed), a failed watermark write,
      // a run lock that could not be kept
      yield* Effect.raceAllFirst([flow, flushing, Deferred.await(lockFailed)])
    })).pipe(
      // a failed run says where it stopped: what is recorded is proven in S3, the rest is done again
      Effect.tapCause((cause) =>
        Cause.hasInterruptsOnly(cause) ? Effect.void : Effect.flatMap(stats.snapshot, (s) =>
          Effect.logError(
            `the run failed: ${s.processed.committer} row(s) recorded by this run, each with its object proven in ${store.target}; ` +
              `${Math.max(0, s.processed.storer - s.processed.committer)} object(s) stored but not recorded (harmless: a rerun records them)`
          ))
      ),
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
      finalized: false,
      stopped: yield* stopping,
      ...(Option.isSome(staging) ? { inline } : {})
    }
    // every row was listed and none failed: the next run starts from the beginning again
    if (Option.isSome(table) && summary.failed === 0 && options.limit === undefined && !summary.stopped) {
      yield* table.value.clear
    }
    if (summary.failed > 0 || summary.stopped) return summary
    if (!settings.finalize) return summary
    yield* Verification.requireAllGood({ concurrency: settings.storerThreads, retry: defaultPolicy(settings.retries), report: options.report })
    yield* source.finalize
    return { ...summary, finalized: true }
  }))

const errorMessage = (error: unknown): string =>
  typeof error === "object" && error !== null && "message" in error ? String(error.message) : String(error)

/** The options of `Migration.layer`: the CLI flags' names in camelCase (plain strings for secrets are fine). */
export interface MigrationOptions extends SettingsInput {
  /** where the periodic report goes; default: logged at Info. `false`: no report (use `events`) */
  readonly report?: ((text: string) => Effect.Effect<void>) | false | undefined
  /** migrate at most this many objects */
  readonly limit?: number | undefined
  /** time between Snapshot events on `events`; default 1 second */
  readonly eventInterval?: Duration.Input | undefined
  /** serve Prometheus /metrics on this port during `run` (0: any free port) */
  readonly metricsPort?: number | undefined
  /** default 127.0.0.1 */
  readonly metricsHost?: string | undefined
}

/**
 * The library face of a migration: `Migration.layer(options)` validates the options (failing the layer
 * with a `SettingsError`) and offers
 * - `run`: one migration; yields the `Summary`, fails with `RowsFailed` when rows were skipped, or with
 *   the typed setup or run error;
 * - `events`: the run's progress as a Stream (Started, a Snapshot every `eventInterval`, RowFailed,
 *   and Finished, after which the stream ends); subscribe before or during `run`;
 * - `stop`: asks a running migration to finish what is in flight and end.
 */
export class Migration extends Context.Service<Migration, {
  readonly settings: Settings
  readonly run: Effect.Effect<Summary, MigrateError>
  readonly events: Stream.Stream<Events.ProgressEvent>
  readonly stop: Effect.Effect<void>
}>()("lo-migrate/Migration") {
  static readonly layer = (input: MigrationOptions): Layer.Layer<Migration, SettingsError> =>
    Layer.effect(
      Migration,
      Effect.gen(function*() {
        const settings = yield* validate(input)
        const stopping = yield* Ref.make(false)
        // replay 1: a subscriber that comes late still sees the latest event (at worst Finished, then ends)
        const pubsub = yield* PubSub.unbounded<Events.ProgressEvent>({ replay: 1 })
        const report = input.report === false
          ? undefined
          : input.report ?? ((text: string) => Effect.logInfo(text))
        const port = input.metricsPort
        if (port !== undefined && !(Number.isSafeInteger(port) && port >= 0 && port <= 65535)) {
          return yield* new SettingsError({ setting: "metricsPort", problem: `${port} is not a TCP port` })
        }
        const metrics = port === undefined ? undefined : { port, host: input.metricsHost ?? "127.0.0.1" }
        const options: RunOptions = {
          report: report ?? (() => Effect.void),
          stopping: Ref.get(stopping),
          limit: input.limit,
          onEvent: (event) => Effect.asVoid(PubSub.publish(pubsub, event)),
          eventInterval: input.eventInterval ?? "1 second",
          ...(report === undefined ? { display: Effect.succeed({ loop: Effect.never, final: Effect.void }) } : {}),
          metrics
        }
        return Migration.of({
          settings,
          stop: Ref.set(stopping, true),
          events: Stream.fromPubSub(pubsub).pipe(Stream.takeUntil(Events.isFinished)),
          run: run(settings, options).pipe(
            provideTo(settings),
            Effect.flatMap((summary) =>
              summary.failed > 0 ? Effect.fail(new RowsFailed({ failed: summary.failed })) : Effect.succeed(summary)
            )
          )
        })
      })
    )
}
