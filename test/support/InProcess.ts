// One migration in-process through the library (Migration.run) against the test's PostgreSQL and S3,
// with the object store decorated by the test: to act at a chosen moment between a row's read and its
// commit (a store call happens after the read and before the commit), deterministically.
import { Effect, References } from "effect"
import { type SettingsInput, validate } from "../../src/domain/Settings.ts"
import * as Migration from "../../src/migrate/Migration.ts"
import { ObjectStore } from "../../src/s3/ObjectStore.ts"
import { TestDatabase } from "./Postgres.ts"
import { TestS3 } from "./S3.ts"

export const migrateWithStore = (
  input: Omit<SettingsInput, "pgUrl" | "bucket">,
  decorate: (store: ObjectStore["Service"]) => ObjectStore["Service"]
) =>
  Effect.gen(function*() {
    const db = yield* TestDatabase
    const s3 = yield* TestS3
    const settings = yield* validate({
      pgUrl: db.url,
      s3Url: s3.endpoint,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      bucket: s3.bucket,
      ...input
    })
    return yield* Effect.gen(function*() {
      const store = yield* ObjectStore
      return yield* Migration.run(settings, { report: () => Effect.void }).pipe(
        Effect.provideService(ObjectStore, decorate(store)),
        // the run's own logs (the failed row) would clutter the test output
        Effect.provideService(References.MinimumLogLevel, "None")
      )
    }).pipe(Migration.provideTo(settings))
  })

/** A decorator: `store` whose `put` of the object of row `rowKey` first runs `before` (once), in the caller's context. */
export const beforePutOf = <E, R>(rowKey: string, before: Effect.Effect<void, E, R>) =>
  Effect.map(Effect.context<R>(), (context) => (store: ObjectStore["Service"]): ObjectStore["Service"] => {
    let done = false
    return ObjectStore.of({
      ...store,
      put: (request) =>
        Effect.gen(function*() {
          if (request.rowKey === rowKey && !done) {
            done = true
            yield* before.pipe(Effect.provideContext(context), Effect.orDie)
          }
          return yield* store.put(request)
        })
    })
  })
