// What the run lock and the resume watermark are keyed by (src/postgres/RunKey.ts), through the
// executable: the watermark by the table, its key columns and the result, so a rerun with other
// --key-columns starts afresh instead of resuming after a key of another shape; the lock by the table
// as the catalog names it, so nice2 and --profile table on _nice_binary exclude each other; and a
// watermark an earlier version kept under the table's name alone is taken over where its key's shape is
// certain (nice2) and deleted where it is not (--profile table).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { runLocksHeld, waitUntil } from "./support/Sessions.ts"
import { target, targetVia } from "./support/Target.ts"

const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const watermarks = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  return yield* sql<{ readonly table_name: string; readonly key: string }>`
    SELECT table_name, key FROM lo_migrate_watermark ORDER BY table_name`
})

/**
 * files(id, name): both unique, in opposite orders: id 1..20 has name '0999'..'0980', so every name
 * sorts before the text of any id ('0…' < '1…'): a run by name resuming after an id would list nothing.
 */
const createFiles = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE files (id bigint PRIMARY KEY, name text NOT NULL UNIQUE, content oid)`
  yield* sql`INSERT INTO files SELECT i, lpad((1000 - i)::text, 4, '0'), lo_from_bytea(0, convert_to('file ' || i, 'UTF8'))
    FROM generate_series(1, 20) AS i`
})
const files = (key: string) => ["--profile", "table", "--table", "files", "--oid-column", "content", "--key-column", key]
const unmarkedFiles = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const [row] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM files WHERE sha256 IS NULL`
  return row!.n
})

describe("the watermark is keyed by the table, its key columns and the result", () => {
  it.live("a rerun with other --key-columns does not skip rows: it starts afresh", () =>
    Effect.gen(function*() {
      yield* createFiles
      const t = yield* target
      const trial = yield* runCli(["migrate", ...t, ...files("id"), "--limit", "5", "--commit-chunk", "1"])
      assert.strictEqual(trial.code, 0, trial.stderr)
      assert.deepStrictEqual((yield* watermarks).map((w) => w.key), ["5"])

      const byName = yield* runCli(["migrate", ...t, ...files("name")])
      assert.strictEqual(byName.code, 0, byName.stderr)
      assert.notInclude(byName.stderr, "resuming after")
      assert.include(byName.stdout, "migrated 15 object(s)")
      assert.strictEqual(yield* unmarkedFiles, 0)
      // the run by name completed and cleared its own watermark; the one by id is kept for runs by id
      assert.deepStrictEqual(yield* watermarks, [{ table_name: "public.files (id) -> sha256", key: "5" }])
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("a watermark of an earlier version (the table's name alone) is taken over by nice2 and deleted for --profile table", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const t = yield* target
      yield* createNice2Schema()
      for (let i = 0; i < 6; i++) yield* insertObject({ bytes: randomBytes(200 + i, 10 + i) })
      const trial = yield* runCli(["migrate", ...t, "--limit", "3", "--commit-chunk", "1"])
      assert.strictEqual(trial.code, 0, trial.stderr)
      // as an earlier version named it
      const [mark] = yield* sql<{ readonly key: string }>`
        UPDATE lo_migrate_watermark SET table_name = '_nice_binary' RETURNING key`
      const resumed = yield* runCli(["migrate", ...t])
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stderr, `watermark '_nice_binary' of an earlier version kept as 'public._nice_binary (hash) -> sha2'`)
      assert.include(resumed.stderr, `resuming after ${mark!.key}`)
      assert.include(resumed.stdout, "migrated 3 object(s)")
      assert.isTrue((yield* readRows).every((r) => r.sha2 !== null))
      assert.deepStrictEqual(yield* watermarks, [], "cleared by the run that completed")

      yield* createFiles
      const byId = yield* runCli(["migrate", ...t, ...files("id"), "--limit", "5", "--commit-chunk", "1"])
      assert.strictEqual(byId.code, 0, byId.stderr)
      yield* sql`UPDATE lo_migrate_watermark SET table_name = '"files"'`
      const byName = yield* runCli(["migrate", ...t, ...files("name")])
      assert.strictEqual(byName.code, 0, byName.stderr)
      assert.include(byName.stderr, `watermark '"files"' of an earlier version deleted`)
      assert.notInclude(byName.stderr, "resuming after")
      assert.include(byName.stdout, "migrated 15 object(s)")
      assert.deepStrictEqual(yield* watermarks, [])
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})

describe("the run lock is keyed by the table as the catalog names it", () => {
  it.live("nice2 and --profile table on _nice_binary at once: the second is refused with exit 2, either way round", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      for (let i = 0; i < 6; i++) yield* insertObject({ bytes: randomBytes(300 + i, 50 + i) })
      // the first run's object PUTs are slow, so it holds the lock while the second starts
      yield* proxy.setRules([{ name: "slow", method: "PUT", path: new RegExp(`^/${s3.bucket}/[0-9a-f]{64}`), fault: { kind: "slow", delayMs: 1_500 } }])
      const slow = [...(yield* targetVia(proxy.endpoint)), "--storer-threads", "1", "--commit-chunk", "1"]
      const direct = yield* target
      const nice2: ReadonlyArray<string> = [] // the default profile
      const table = ["--profile", "table", "--table", "public._nice_binary", "--oid-column", "data", "--key-column", "hash",
        "--sha256-column", "sha2", "--mime-column", "mime_type", "--size-column", "size"]

      const race = (first: ReadonlyArray<string>, second: ReadonlyArray<string>) =>
        Effect.gen(function*() {
          yield* sql`UPDATE _nice_binary SET sha2 = NULL`.pipe(Effect.ignore)
          const running = yield* Effect.forkChild(runCli(["migrate", ...slow, ...first]))
          yield* waitUntil(Effect.map(runLocksHeld, (n) => n > 0), 30_000)
          const refused = yield* runCli(["migrate", ...direct, ...second])
          const done = yield* Fiber.join(running)
          assert.strictEqual(refused.code, 2, refused.stderr)
          assert.match(refused.stderr, /another lo-migrate run is working on (public\.)?_nice_binary/)
          assert.strictEqual(done.code, 0, done.stderr)
          assert.include(done.stdout, "migrated 6 object(s)")
        })
      yield* race(nice2, table)
      yield* race(table, nice2)
      assert.isTrue((yield* readRows).every((r) => r.sha2 !== null))
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
