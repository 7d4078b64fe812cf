// Rows as real databases hold them: a large object this role may not read in the middle of a batch, a
// row that claims 10 bytes for a 300 MiB object, a NULL size. Each is that row's problem: it is named,
// the others migrate, and memory stays within the budget. Real executable, PostgreSQL, s3rver.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import { randomBytes as cryptoRandomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { asSuperuser, pgTestServer, TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, freshTempDir } from "./support/Verify.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const server = pgTestServer()
const MiB = 1024 * 1024

/** Peak resident memory of a running process (VmHWM), read until it exits: Linux only. */
const watchPeakRss = (pid: number | undefined) => {
  const state = { peakKiB: 0 }
  const read = () => {
    try {
      const status = NodeFs.readFileSync(`/proc/${pid}/status`, "utf8")
      const match = /VmHWM:\s+(\d+) kB/.exec(status)
      if (match !== null) state.peakKiB = Math.max(state.peakKiB, Number(match[1]))
    } catch {
      // gone
    }
  }
  const timer = setInterval(read, 20)
  return { state, stop: () => clearInterval(timer), read }
}

/** A large object of `mib` MiB made by the server itself (no test memory), and its oid. */
const serverSideObject = (mib: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const [{ oid }] = (yield* sql<{ oid: number }>`SELECT lo_create(0) AS oid`) as unknown as [{ oid: number }]
    yield* sql.unsafe(`DO $$ BEGIN
      FOR i IN 0..${mib - 1} LOOP
        PERFORM lo_put(${oid}, i * 1048576, convert_to(repeat(md5(i::text), 32768), 'UTF8'));
      END LOOP; END $$`)
    return oid
  })

describe("rows as real databases hold them", () => {
  it.live.skipIf(server.external)("a large object this role may not read, amid a batch of small ones: that row fails (permission-denied), every other migrates", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const other = `lomigrate_other_${cryptoRandomBytes(4).toString("hex")}`
      const asAdmin = asSuperuser
      yield* Effect.acquireRelease(
        asAdmin("postgres", [`CREATE ROLE ${other} NOLOGIN`]),
        () => asAdmin(db.name, [`DROP OWNED BY ${other}`, `DROP ROLE ${other}`]).pipe(Effect.orDie)
      )
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 10; i++) objects.push(yield* insertObject({ bytes: randomBytes(300 + i, 700 + i) }))
      const denied = yield* insertObject({ bytes: randomBytes(333, 799) })
      // the large object now belongs to a role that grants ours nothing (as after a restore by another owner)
      yield* asAdmin(db.name, [`ALTER LARGE OBJECT ${denied.oid} OWNER TO ${other}`])
      for (let i = 0; i < 10; i++) objects.push(yield* insertObject({ bytes: randomBytes(400 + i, 800 + i) }))

      const result = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, new RegExp(`FAILED ${denied.hash} \\(oid ${denied.oid}\\): permission-denied: `))
      assert.include(result.stdout, "migrated 20 object(s)")
      assert.notMatch(result.stderr, /read \d+ large objects failed/)
      yield* assertAllMigrated(objects)
      const row = (yield* readRows).find((r) => r.hash === denied.hash)
      assert.isNull(row?.sha2)
      void sql
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a row that claims 10 bytes for a 300 MiB object: size-mismatch naming the real size, memory within the budget, every rerun alike", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const oid = yield* serverSideObject(300)
      const liar = "ab".repeat(20)
      yield* sql`INSERT INTO _nice_binary (hash, size, mime_type, data) VALUES (${liar}, 10, 'application/pdf', ${oid})`
      const others: Array<InsertedObject> = []
      for (let i = 0; i < 5; i++) others.push(yield* insertObject({ bytes: randomBytes(1000 + i, 900 + i) }))

      for (const attempt of [1, 2]) {
        let watch: ReturnType<typeof watchPeakRss> | undefined
        const result = yield* runCli(["migrate", ...(yield* target), "--memory-budget", "16"], {
          onStart: (child) => {
            watch = watchPeakRss(child.pid)
            child.on("exit", () => watch?.stop())
          }
        })
        assert.strictEqual(result.code, 1, result.stderr)
        assert.match(result.stderr, new RegExp(`FAILED ${liar} \\(oid ${oid}\\): size-mismatch: the row says 10 bytes, the large object has ${300 * MiB} bytes`))
        // before: about 1 GiB, reproducibly; Node, V8 and the SDK alone take about 150 MiB
        assert.isBelow(watch!.state.peakKiB, 260 * 1024, `peak RSS of run ${attempt}: ${watch!.state.peakKiB} KiB`)
        assert.isAbove(watch!.state.peakKiB, 0, "the peak was read")
      }
      yield* assertAllMigrated(others)
      yield* assertMarkedRowsBacked
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a NULL size is unknown, never 0: such rows migrate, in memory and above --in-mem-max alike", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const tmp = yield* freshTempDir
      yield* createNice2Schema()
      yield* sql`ALTER TABLE _nice_binary ALTER COLUMN size DROP NOT NULL`
      const small = yield* insertObject({ bytes: randomBytes(700, 11) })
      const big = yield* insertObject({ bytes: randomBytes(3 * MiB + 1, 12) })
      const empty = yield* insertObject({ bytes: new Uint8Array(0) })
      const sized = yield* insertObject({ bytes: randomBytes(500, 13) })
      yield* sql`UPDATE _nice_binary SET size = NULL WHERE hash IN (${small.hash}, ${big.hash}, ${empty.hash})`
      const result = yield* runCli(["migrate", ...(yield* target), "--temp-dir", tmp, "--upload-chunk-size", "5120"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "migrated 4 object(s)")
      yield* assertAllMigrated([small, big, empty, sized])
      assert.deepStrictEqual(NodeFs.readdirSync(tmp).filter((n) => n.startsWith("lo_migrate.")), [])
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a row PostgreSQL refuses to record (a trigger's exception for that row alone): that row fails (commit-refused), every other is marked", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema({ withSha2Column: true })
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 30; i++) objects.push(yield* insertObject({ bytes: randomBytes(600 + i, 1200 + i) }))
      const refused = objects[13]!
      // as an application's own trigger or constraint might, for this one row
      yield* sql.unsafe(`CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF NEW.hash = '${refused.hash}' AND NEW.sha2 IS NOT NULL THEN RAISE EXCEPTION 'row % is frozen', NEW.hash; END IF; RETURN NEW; END $$`)
      yield* sql`CREATE TRIGGER refuse_one BEFORE UPDATE ON _nice_binary FOR EACH ROW EXECUTE FUNCTION refuse_one()`
      const result = yield* runCli(["migrate", ...(yield* target), "--commit-chunk", "10"])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, new RegExp(`FAILED ${refused.hash} \\(oid ${refused.oid}\\): commit-refused: .*is frozen`))
      assert.include(result.stdout, "migrated 29 object(s)")
      yield* assertAllMigrated(objects.filter((o) => o !== refused))
      yield* assertMarkedRowsBacked
      assert.isNull((yield* readRows).find((r) => r.hash === refused.hash)?.sha2)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
