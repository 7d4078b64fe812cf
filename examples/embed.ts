/**
 * Embedding lo-migrate in an Effect program: build the Migration layer from the environment, watch
 * its progress events, run it, and handle the typed outcome.
 *
 *   LO_MIGRATE_PG_URL=postgres://… LO_MIGRATE_S3_URL=http://… LO_MIGRATE_BUCKET=… \
 *   AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… node examples/embed.ts
 *
 * (Node >= 22.18 runs TypeScript directly; inside this repository "lo-migrate" resolves to dist/.)
 */
import { NodeRuntime } from "@effect/platform-node"
import { Config, Console, Effect, Fiber, Layer, Option, Stream } from "effect"
import { Migration, type ProgressEvent } from "lo-migrate"

/** The options come from the environment here; any source of camelCase flag values works. */
const options = Config.all({
  pgUrl: Config.Redacted("LO_MIGRATE_PG_URL"),
  s3Url: Config.option(Config.String("LO_MIGRATE_S3_URL")),
  bucket: Config.String("LO_MIGRATE_BUCKET"),
  accessKey: Config.option(Config.Redacted("AWS_ACCESS_KEY_ID")),
  secretKey: Config.option(Config.Redacted("AWS_SECRET_ACCESS_KEY")),
  storerThreads: Config.Int("STORER_THREADS").pipe(Config.withDefault(4))
})

const MigrationLive = Layer.unwrap(Effect.gen(function*() {
  const o = yield* options
  return Migration.layer({
    pgUrl: o.pgUrl,
    s3Url: Option.getOrUndefined(o.s3Url),
    bucket: o.bucket,
    accessKey: Option.getOrUndefined(o.accessKey),
    secretKey: Option.getOrUndefined(o.secretKey),
    storerThreads: o.storerThreads,
    report: false, // no periodic text report: this program shows the events instead
    eventInterval: "500 millis"
  })
}))

const show = (event: ProgressEvent) => {
  switch (event._tag) {
    case "Started":
      return Console.log(`started: ${event.remaining} of ${event.total} rows of ${event.table} to migrate into ${event.target}`)
    case "Snapshot":
      return Console.log(`progress: ${event.snapshot.processed.committer} migrated, ${event.snapshot.failed} failed`)
    case "RowFailed":
      return Console.log(`row failed: ${event.failure.key}: ${event.failure.reason}`)
    case "Finished":
      return Console.log(`finished (${event.outcome}): ${event.migrated} migrated, ${event.failed} failed, ${event.bytes} bytes`)
  }
}

const program = Effect.gen(function*() {
  const migration = yield* Migration
  // the stream ends by itself after the Finished event
  const watcher = yield* Effect.forkChild(Stream.runForEach(migration.events, show))
  const summary = yield* migration.run.pipe(
    // skipped rows are a typed error; this program reports them and still exits 0
    Effect.catchTag("RowsFailed", (error) => Effect.as(Console.log(`warning: ${error.message}`), undefined))
  )
  yield* Fiber.join(watcher)
  if (summary !== undefined) {
    yield* Console.log(`summary: migrated ${summary.migrated}, failed ${summary.failed}, bytes ${summary.bytes}`)
  }
})

program.pipe(Effect.provide(MigrationLive), NodeRuntime.runMain)
