// zodb-convert --verify, end to end with the real executable: after a clean conversion of the fixtures
// (FileStorage with blobs in s3rver, RelStorage history-preserving) verify exits 0 with no difference;
// then one thing at a time is tampered with in the destination (and put back), and verify exits 1 naming
// exactly that difference (table, oid, tid). --sample states its sample and seed, --deep sees bytes
// that HEAD cannot, a copy that is not finalized is said to be one, and an unreachable destination is
// exit 2.
import { DeleteObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { Difference, VerifyReport } from "../../src/zodb/ZodbVerify.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { TestS3 } from "../support/S3.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import {
  digest,
  filestorageSection,
  fixtures,
  keywordDsn,
  relstorageSection,
  restoreDump,
  writeConfig,
  zodbConvert
} from "../support/Zodb.ts"

const dataFs = `${fixtures}/filestorage/Data.fs`
const blobDir = `${fixtures}/filestorage/blobs`

const hex16 = (n: bigint | string | number) => BigInt.asUintN(64, BigInt(n)).toString(16).padStart(16, "0")

const subdir = (dir: string, name: string) => {
  const path = NodePath.join(dir, name)
  NodeFs.mkdirSync(path)
  return path
}

/** Runs `zodb-convert CONFIG --verify ...`; the JSON report comes on stdout. */
const verify = (config: string, args: ReadonlyArray<string> = []) =>
  Effect.map(zodbConvert([config, "--verify", ...args]), (r) => {
    let report: VerifyReport | undefined
    try {
      report = JSON.parse(r.stdout) as VerifyReport
    } catch {
      report = undefined
    }
    return { ...r, report }
  })

/** Exit 1 with exactly one difference, at this table, oid and tid. */
const expectOne = (
  result: { readonly code: number | null; readonly stderr: string; readonly report: VerifyReport | undefined },
  where: { readonly table: Difference["table"]; readonly zoid?: string; readonly tid?: string },
  problem?: RegExp
) => {
  assert.strictEqual(result.code, 1, result.stderr)
  const report = result.report!
  assert.strictEqual(report.differences.length, 1, JSON.stringify(report.differences, null, 2))
  const d = report.differences[0]!
  assert.strictEqual(d.table, where.table)
  assert.strictEqual(d.zoid, where.zoid)
  assert.strictEqual(d.tid, where.tid)
  if (problem !== undefined) assert.match(d.problem, problem)
  // a row that differs is a bad row; the watermark table is no row
  assert.strictEqual(report.bad, where.table === "zodb_convert_watermark" ? 0 : 1)
}

const expectClean = (result: { readonly code: number | null; readonly stderr: string; readonly report: VerifyReport | undefined }) => {
  assert.strictEqual(result.code, 0, result.stderr)
  const report = result.report!
  assert.deepStrictEqual(report.differences, [])
  for (const [table, c] of Object.entries(report.counts)) assert.strictEqual(c.destination, c.source, table)
  assert.strictEqual(report.bad, 0)
  assert.strictEqual(report.good, report.checked)
  return report
}

describe("zodb-convert --verify: FileStorage with blobs in S3", () => {
  layer(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer), { timeout: 300_000 })((it) => {
    it.effect("a clean copy verifies; each tampering is named by table, oid and tid; --sample, --deep, not finalized, unreachable", () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const s3 = yield* TestS3
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-verify-")
        const config = writeConfig(dir, { source: filestorageSection(dataFs, blobDir), db, s3, prefix: "zodb1" })
        const copied = yield* zodbConvert([config, "-w", "2", "--progress", "plain"])
        assert.strictEqual(copied.code, 0, copied.stderr)
        const before = yield* digest(db)

        const clean = expectClean(yield* verify(config))
        assert.isTrue(clean.complete)
        assert.isNull(clean.sample)
        assert.strictEqual(clean.counts.transaction_log!.source, 12)
        assert.strictEqual(clean.counts.blob_state!.source, 7)
        assert.isUndefined(clean.counts.object_history)
        // verify wrote nothing
        assert.deepStrictEqual(yield* digest(db), before)

        // --report FILE: the same report in the file, nothing on stdout
        const reportFile = NodePath.join(dir, "report.json")
        const toFile = yield* zodbConvert([config, "--verify", "--report", reportFile])
        assert.strictEqual(toFile.code, 0, toFile.stderr)
        assert.strictEqual(toFile.stdout, "")
        assert.deepStrictEqual((JSON.parse(NodeFs.readFileSync(reportFile, "utf8")) as VerifyReport).counts, clean.counts)

        // --progress json: stdout holds JSON lines only; both passes read the 12 transactions, so done
        // rises to 24 of 24, and the report is the summary's (no --report)
        const json = yield* zodbConvert([config, "--verify", "--progress", "json", "--interval", "1"])
        assert.strictEqual(json.code, 0, json.stderr)
        const events = json.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
        assert.deepInclude(events[0], { event: "started", task: "verify", unit: "transactions" })
        for (const e of events.filter((e) => e.event === "progress")) {
          if (e.total !== null) assert.strictEqual(e.total, 24)
          assert.isAtMost(e.done as number, 24)
        }
        const summary = events.at(-1)!
        assert.deepInclude(summary, { event: "summary", outcome: "success", done: 24, total: 24, percent: 100, sourceTransactions: 12, differences: 0 })
        assert.deepStrictEqual((summary.report as VerifyReport).counts, clean.counts)
        const plain = yield* zodbConvert([config, "--verify", "--report", reportFile, "--progress", "plain"])
        assert.match(plain.stderr, /\nverify: 24 of 24 transactions \(100\.0%\), [\d.]+\/s, in 0h 00m \d\ds, pass 2 of 2 \(object states\): \d+ records, \d+ blobs, 0 difference\(s\)\n/)

        // 1. one state changed (jsonb)
        const [obj] = yield* sql<{ zoid: string; tid: string; state: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, state::text AS state FROM object_state
          WHERE jsonb_typeof(state) = 'object' ORDER BY zoid DESC LIMIT 1`
        yield* sql`UPDATE object_state SET state = state || '{"tampered": 1}'::jsonb WHERE zoid = ${obj!.zoid}`
        expectOne(yield* verify(config), { table: "object_state", zoid: hex16(obj!.zoid), tid: hex16(obj!.tid) }, /state differs/)
        yield* sql`UPDATE object_state SET state = ${obj!.state}::jsonb WHERE zoid = ${obj!.zoid}`
        expectClean(yield* verify(config))

        // 2. one object_state row deleted
        const [row] = yield* sql<{ zoid: string; tid: string; j: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, to_jsonb(o)::text AS j FROM object_state o ORDER BY zoid LIMIT 1 OFFSET 3`
        yield* sql`DELETE FROM object_state WHERE zoid = ${row!.zoid}`
        const deleted = yield* verify(config)
        expectOne(deleted, { table: "object_state", zoid: hex16(row!.zoid), tid: hex16(row!.tid) }, /missing/)
        assert.strictEqual(deleted.report!.counts.object_state!.destination, deleted.report!.counts.object_state!.source - 1)
        yield* sql`INSERT INTO object_state SELECT * FROM jsonb_populate_record(null::object_state, ${row!.j}::jsonb)`
        expectClean(yield* verify(config))

        // 3. one byte of an inline blob
        const [inline] = yield* sql<{ zoid: string; tid: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid FROM blob_state WHERE data IS NOT NULL AND length(data) > 0 ORDER BY zoid, tid LIMIT 1`
        const flip = sql`UPDATE blob_state SET data = set_byte(data, 0, get_byte(data, 0) # 1) WHERE zoid = ${inline!.zoid} AND tid = ${inline!.tid}`
        yield* flip
        expectOne(yield* verify(config), { table: "blob_state", zoid: hex16(inline!.zoid), tid: hex16(inline!.tid) }, /inline data differs/)
        yield* flip
        expectClean(yield* verify(config))

        // 4. an S3 object deleted
        const [inS3] = yield* sql<{ zoid: string; tid: string; s3_key: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, s3_key FROM blob_state WHERE s3_key IS NOT NULL ORDER BY blob_size LIMIT 1`
        const key = `zodb1/${inS3!.s3_key}`
        const original = (yield* s3.getObject(key)).pipe((o) => (o._tag === "Some" ? o.value : assert.fail(`no ${key}`)))
        const putBack = (bytes: Uint8Array) => s3.putObject(key, bytes, { metadata: original.metadata, contentType: "application/octet-stream" })
        yield* s3.use("DeleteObject", (c, abortSignal) => c.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal }))
        expectOne(yield* verify(config), { table: "blob_state", zoid: hex16(inS3!.zoid), tid: hex16(inS3!.tid) }, /missing/)
        yield* putBack(original.bytes)
        expectClean(yield* verify(config))

        // 5. an S3 object's bytes changed, its size and metadata kept: HEAD cannot see it, --deep does
        const changed = Uint8Array.from(original.bytes)
        changed[changed.length >> 1] = changed[changed.length >> 1]! ^ 0xff
        yield* putBack(changed)
        expectClean(yield* verify(config))
        const deep = yield* verify(config, ["--deep"])
        expectOne(deep, { table: "blob_state", zoid: hex16(inS3!.zoid), tid: hex16(inS3!.tid) }, /differs from the source's blob/)
        assert.isTrue(deep.report!.deep)
        yield* putBack(original.bytes)
        expectClean(yield* verify(config, ["--deep"]))

        // 6. a transaction's description
        const [tx] = yield* sql<{ tid: string; description: string }>`
          SELECT tid::text AS tid, description FROM transaction_log ORDER BY tid LIMIT 1 OFFSET 2`
        yield* sql`UPDATE transaction_log SET description = description || ' (edited)' WHERE tid = ${tx!.tid}`
        const edited = yield* verify(config)
        expectOne(edited, { table: "transaction_log", tid: hex16(tx!.tid) }, /description differs/)
        assert.deepStrictEqual(edited.report!.differences[0]!.expected, { description: tx!.description })
        yield* sql`UPDATE transaction_log SET description = ${tx!.description} WHERE tid = ${tx!.tid}`

        // --sample N: a stated sample and seed; --seed draws it again
        const sampled = yield* verify(config, ["--sample", "5"])
        expectClean(sampled)
        assert.isFalse(sampled.report!.complete)
        assert.strictEqual(sampled.report!.sample!.size, 5)
        assert.strictEqual(sampled.report!.sample!.of, clean.counts.object_state!.source)
        const seed = sampled.report!.sample!.seed
        const again = yield* verify(config, ["--sample", "5", "--seed", String(seed)])
        expectClean(again)
        assert.strictEqual(again.report!.sample!.seed, seed)
        // a sample still compares every key and count: a deleted row is found whatever the sample
        yield* sql`DELETE FROM object_state WHERE zoid = ${row!.zoid}`
        expectOne(yield* verify(config, ["--sample", "1"]), { table: "object_state", zoid: hex16(row!.zoid), tid: hex16(row!.tid) }, /missing/)
        yield* sql`INSERT INTO object_state SELECT * FROM jsonb_populate_record(null::object_state, ${row!.j}::jsonb)`

        // a copy that is not finalized: the watermark table, a deletion tombstone
        yield* sql`CREATE TABLE zodb_convert_watermark (id boolean PRIMARY KEY DEFAULT true, tid bigint NOT NULL)`
        expectOne(yield* verify(config), { table: "zodb_convert_watermark" }, /copy not finalized/)
        yield* sql`DROP TABLE zodb_convert_watermark`
        const [last] = yield* sql<{ tid: string }>`SELECT max(tid)::text AS tid FROM transaction_log`
        yield* sql`INSERT INTO object_state (zoid, tid, class_mod, class_name, state, state_size, refs)
          VALUES (${String(0x12f)}, ${last!.tid}, '', '', NULL, 0, '{}')`
        const tomb = yield* verify(config)
        assert.strictEqual(tomb.code, 1, tomb.stderr)
        assert.isTrue(tomb.report!.differences.some((d) => d.table === "object_state" && d.zoid === hex16(0x12f) && /copy not finalized/.test(d.problem)),
          JSON.stringify(tomb.report!.differences))
        yield* sql`DELETE FROM object_state WHERE zoid = ${String(0x12f)}`
        expectClean(yield* verify(config))
        assert.deepStrictEqual(yield* digest(db), before)

        // an unreachable destination: exit 2, no report
        const unreachable = writeConfig(subdir(dir, "down"), { source: filestorageSection(dataFs, blobDir), db: { ...db, host: "127.0.0.1", port: 1 } })
        const down = yield* verify(unreachable)
        assert.strictEqual(down.code, 2, down.stderr)
        assert.isUndefined(down.report)
        assert.notInclude(down.stderr, db.password)
      }))
  })
})

describe("zodb-convert --verify: RelStorage history-preserving", () => {
  layer(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer), { timeout: 300_000 })((it) => {
    it.effect("a clean copy verifies, object_history included; a changed or deleted earlier revision is named", () =>
      Effect.scoped(Effect.gen(function*() {
        const db = yield* TestDatabase
        const s3 = yield* TestS3
        const sql = yield* SqlClient.SqlClient
        const source = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
        yield* restoreDump(source, `${fixtures}/relstorage/relstorage-hp.sql`)
        const dir = yield* scopedTempDir("zodb-verify-rs-")
        const config = writeConfig(dir, { source: relstorageSection(keywordDsn(source), true), db, s3, historyPreserving: true })
        const copied = yield* zodbConvert([config, "-w", "2", "--progress", "plain"])
        assert.strictEqual(copied.code, 0, copied.stderr)

        const clean = expectClean(yield* verify(config))
        assert.isTrue(clean.historyPreserving)
        assert.isAbove(clean.counts.object_history!.source, 0)

        // an earlier revision's state changed
        const [old] = yield* sql<{ zoid: string; tid: string; state: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, state::text AS state FROM object_history
          WHERE jsonb_typeof(state) = 'object' ORDER BY zoid, tid LIMIT 1`
        yield* sql`UPDATE object_history SET state = state || '{"tampered": 1}'::jsonb WHERE zoid = ${old!.zoid} AND tid = ${old!.tid}`
        expectOne(yield* verify(config), { table: "object_history", zoid: hex16(old!.zoid), tid: hex16(old!.tid) }, /state differs/)
        yield* sql`UPDATE object_history SET state = ${old!.state}::jsonb WHERE zoid = ${old!.zoid} AND tid = ${old!.tid}`

        // an earlier revision deleted
        const [row] = yield* sql<{ zoid: string; tid: string; j: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, to_jsonb(h)::text AS j FROM object_history h ORDER BY tid DESC, zoid LIMIT 1`
        yield* sql`DELETE FROM object_history WHERE zoid = ${row!.zoid} AND tid = ${row!.tid}`
        expectOne(yield* verify(config), { table: "object_history", zoid: hex16(row!.zoid), tid: hex16(row!.tid) }, /missing/)
        yield* sql`INSERT INTO object_history SELECT * FROM jsonb_populate_record(null::object_history, ${row!.j}::jsonb)`

        // the state of the current revision, in a sample of every object (the sample is all of them: complete)
        const all = yield* verify(config, ["--sample", String(clean.counts.object_state!.source)])
        expectClean(all)
        assert.isTrue(all.report!.complete)

        // the wrong mode in the config: a setup problem
        const hf = writeConfig(subdir(dir, "hf"), { source: relstorageSection(keywordDsn(source), true), db, s3, historyPreserving: false })
        const wrong = yield* verify(hf)
        assert.strictEqual(wrong.code, 2, wrong.stderr)
        assert.match(wrong.stderr, /history-preserving/)
      })))
  })
})

describe("zodb-convert --verify: FileStorage into a history-preserving destination, blobs inline", () => {
  layer(TestDatabase.layerClient, { timeout: 300_000 })((it) => {
    it.effect("every revision and every deletion's tombstone in object_history verifies; a missing tombstone is named", () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-verify-hp-")
        const config = writeConfig(dir, { source: filestorageSection(dataFs, blobDir), db, historyPreserving: true })
        const copied = yield* zodbConvert([config, "-w", "2", "--progress", "plain"])
        assert.strictEqual(copied.code, 0, copied.stderr)
        const clean = expectClean(yield* verify(config, ["-w", "1"]))
        assert.strictEqual(clean.counts.blob_state!.source, 7)

        // the deleteObject of oid 0x130 and the undone creation of 0x12f leave tombstones in object_history
        const tombs = yield* sql<{ zoid: string; tid: string; j: string }>`
          SELECT zoid::text AS zoid, tid::text AS tid, to_jsonb(h)::text AS j FROM object_history h
          WHERE state IS NULL ORDER BY zoid, tid`
        assert.isAbove(tombs.length, 0)
        const t = tombs[tombs.length - 1]!
        yield* sql`DELETE FROM object_history WHERE zoid = ${t.zoid} AND tid = ${t.tid}`
        expectOne(yield* verify(config), { table: "object_history", zoid: hex16(t.zoid), tid: hex16(t.tid) }, /deletion/)
        yield* sql`INSERT INTO object_history SELECT * FROM jsonb_populate_record(null::object_history, ${t.j}::jsonb)`
        expectClean(yield* verify(config))
      }))
  })
})
