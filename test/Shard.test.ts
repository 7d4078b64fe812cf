// Scale-out with `--shard i/n`: processes share one migration with no coordinator but PostgreSQL.
// Three CLI processes at once finish a table exactly once (every row marked, each object PUT by exactly
// one of them, counted at a proxy in front of the real S3 server); the run locks keep two processes off
// one shard and keep sharded and unsharded runs apart.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as RunLock from "../src/postgres/RunLock.ts"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"

const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const target = targetVia

/** the run lock nice2 takes here: _nice_binary as the catalog names it (src/postgres/RunKey.ts) */
const nice2Lock = "public._nice_binary"

const tableArgs = ["--profile", "table", "--table", "public.attachments", "--oid-column", "content", "--key-column", "id", "--key-template", "att/{sha256}"]

const migratedCount = (stdout: string) => Number(/migrated (\d+) object\(s\)/.exec(stdout)?.[1] ?? NaN)

describe("--shard i/n", () => {
  it.live("three processes at once migrate a table exactly once; each reports and verifies its own shard", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      const n = 300
      yield* sql`CREATE TABLE attachments (id bigint PRIMARY KEY, content oid)`
      yield* sql`INSERT INTO attachments SELECT i, lo_from_bytea(0, convert_to('attachment ' || i, 'UTF8'))
        FROM generate_series(1, ${n}::int) AS i`
      const t = yield* target(proxy.endpoint)
      const results = yield* Effect.all(
        [0, 1, 2].map((i) => runCli(["migrate", ...t, ...tableArgs, "--shard", `${i}/3`, "--commit-chunk", "7"])),
        { concurrency: "unbounded" }
      )
      const counts = results.map((r, i) => {
        assert.strictEqual(r.code, 0, `shard ${i}: ${r.stderr}`)
        const totals = /shard \d\/3: (\d+) of (\d+) row\(s\) to migrate/.exec(r.stderr)
        assert.isNotNull(totals, r.stderr)
        assert.strictEqual(totals![1], totals![2])
        const migrated = migratedCount(r.stdout)
        assert.strictEqual(migrated, Number(totals![2]), `shard ${i} migrated its whole shard`)
        assert.isAbove(migrated, 0, `shard ${i} got rows`)
        return migrated
      })
      assert.strictEqual(counts.reduce((a, b) => a + b, 0), n)

      const [open] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM attachments WHERE sha256 IS NULL`
      assert.strictEqual(Number(open!.n), 0, "every row marked")
      const puts = new Map<string, number>()
      for (const entry of yield* proxy.log) {
        if (entry.method === "PUT" && entry.path.startsWith(`/${s3.bucket}/att/`)) {
          puts.set(entry.path, (puts.get(entry.path) ?? 0) + 1)
        }
      }
      assert.strictEqual(puts.size, n, "one key per row")
      assert.deepStrictEqual([...new Set(puts.values())], [1], "each object PUT exactly once")
      // the watermarks of the shards are cleared once each finished
      const [marks] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM lo_migrate_watermark`
      assert.strictEqual(Number(marks!.n), 0)

      const direct = yield* target()
      const verified = yield* Effect.all(
        [0, 1, 2].map((i) => runCli(["verify", ...direct, ...tableArgs, "--shard", `${i}/3`, "--progress", "json"])),
        { concurrency: "unbounded" }
      )
      verified.forEach((r, i) => {
        assert.strictEqual(r.code, 0, r.stderr)
        assert.include(r.stderr, `verified ${counts[i]} migrated object(s)`)
        // the progress's total counts the shard's rows, as its pages list them
        const events = r.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
        assert.deepInclude(events[0], { event: "started", total: counts[i] })
        assert.deepInclude(events.at(-1), { event: "summary", done: counts[i], total: counts[i] })
      })
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("run locks: one process per shard; sharded and unsharded runs exclude each other", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      for (let i = 0; i < 12; i++) yield* insertObject({ bytes: randomBytes(100 + i, 40 + i) })
      const t = yield* target()
      // another "process" (this test's own session) holds shard 0/2
      const held = yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 0, count: 2 } })
        const same = yield* runCli(["migrate", ...t, "--shard", "0/2"])
        assert.strictEqual(same.code, 2, same.stderr)
        assert.include(same.stderr, "another lo-migrate run is working on _nice_binary shard 0/2")
        const unsharded = yield* runCli(["migrate", ...t])
        assert.strictEqual(unsharded.code, 2, unsharded.stderr)
        assert.include(unsharded.stderr, "another lo-migrate run is working on _nice_binary")
        const other = yield* runCli(["migrate", ...t, "--shard", "1/2"])
        assert.strictEqual(other.code, 0, other.stderr)
        return migratedCount(other.stdout)
      }))
      assert.isAbove(held, 0)
      const afterOne = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.strictEqual(afterOne, held, "only shard 1/2's rows are marked")

      // an unsharded run holds the table: no shard may start
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.acquire(nice2Lock, { onLost: Effect.void })
        const shard = yield* runCli(["migrate", ...t, "--shard", "0/2"])
        assert.strictEqual(shard.code, 2, shard.stderr)
        assert.include(shard.stderr, "another lo-migrate run is working on _nice_binary shard 0/2")
      }))
      // in-process: the same shard twice is refused, another shard is not
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 0, count: 2 } })
        const again = yield* Effect.exit(Effect.scoped(RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 0, count: 2 } })))
        assert.isTrue(Exit.isFailure(again))
        yield* Effect.scoped(RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 1, count: 2 } }))
      }))

      const rest = yield* runCli(["migrate", ...t, "--shard", "0/2"])
      assert.strictEqual(rest.code, 0, rest.stderr)
      assert.strictEqual(held + migratedCount(rest.stdout), 12)
      assert.isTrue((yield* readRows).every((r) => r.sha2 !== null))
      const finalize = yield* runCli(["migrate", ...t, "--shard", "0/2", "--finalize"])
      assert.strictEqual(finalize.code, 2, finalize.stderr)
      assert.include(finalize.stderr, "run it once without --shard")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("shards of another count are refused while shards of one count run", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      for (let i = 0; i < 6; i++) yield* insertObject({ bytes: randomBytes(80 + i, 70 + i) })
      const t = yield* target()
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 0, count: 2 } })
        const three = yield* runCli(["migrate", ...t, "--shard", "1/3"])
        assert.strictEqual(three.code, 2, three.stderr)
        assert.include(three.stderr, "shards of _nice_binary are running with /2, this run has /3")
        assert.strictEqual((yield* readRows).filter((r) => r.sha2 !== null).length, 0, "the refused run marked nothing")
        // in-process too, and a refused run leaves no lock behind: the same count still starts
        const conflict = yield* Effect.exit(Effect.scoped(RunLock.acquire(nice2Lock, { onLost: Effect.void, shard: { index: 0, count: 4 } })))
        assert.isTrue(Exit.isFailure(conflict))
        assert.include(String(Exit.isFailure(conflict) ? conflict.cause : ""), "ShardCountConflict")
        const same = yield* runCli(["migrate", ...t, "--shard", "1/2"])
        assert.strictEqual(same.code, 0, same.stderr)
      }))
      // once the /2 runs are gone, /3 may start
      const later = yield* runCli(["migrate", ...t, "--shard", "0/3"])
      assert.strictEqual(later.code, 0, later.stderr)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
