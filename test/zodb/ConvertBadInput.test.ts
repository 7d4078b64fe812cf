// zodb-convert on the rows real databases have when something is wrong: a record with an unknown
// pickle opcode, a class pickle that is no class, a half-written last transaction, a config file with
// a typo, an unreachable server. Each is named (tid, zoid, byte offset; file, line, key), nothing
// crashes, and nothing that cannot be converted is written as done.
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { TestDatabase } from "../support/Postgres.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { ExpectedRow, filestorageSection, fixtures, jsonl, keywordDsn, writeConfig, zodbConvert } from "../support/Zodb.ts"
import { buildDataFs } from "./support/DataFsBuilder.ts"

const records = jsonl<ExpectedRow & { readonly pickle_b64: string | null }>(`${fixtures}/expected/filestorage.jsonl`)
const pickle = (zoid: string) => Buffer.from(records.find((r) => r.zoid === zoid && r.pickle_b64 !== null)!.pickle_b64!, "base64")
const classPickle = Buffer.from("\x80\x03cpersistent.mapping\nPersistentMapping\nq\x00.", "latin1")

const tids = [0x03e0000000000001n, 0x03e0000000000002n, 0x03e0000000000003n, 0x03e0000000000004n, 0x03e0000000000005n]
/** 85 bytes whose state doubles 36 times (DUP, TUPLE2): written out in full it would take terabytes */
const unfoldingBomb = Buffer.concat([classPickle, Buffer.from([0x80, 0x03, 0x5d, ...Array(36).fill([0x32, 0x86]).flat(), 0x2e])])
const hex = (n: bigint) => n.toString(16).padStart(16, "0")

/** each test on a database of its own */
const fresh = <A, E>(effect: Effect.Effect<A, E, TestDatabase | SqlClient.SqlClient | Scope.Scope>) =>
  Effect.scoped(Effect.provide(effect, TestDatabase.layerClient))

describe("zodb-convert: bad input is named, never a crash, never written as done", () => {
  {
    it.effect("an unknown opcode, a non-class class pickle and a state that unfolds without end fail their transactions by tid, zoid and offset; the others are copied; a half-written tail is a warning", () =>
      fresh(Effect.gen(function*() {
        const db = yield* TestDatabase
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-bad-")
        const built = buildDataFs([
          { tid: tids[0]!, records: [{ oid: 0n, data: pickle("0000000000000000") }] },
          { tid: tids[1]!, records: [{ oid: 1n, data: Buffer.concat([classPickle, Buffer.from([0x80, 0x03, 0xff, 0x2e])]) }] },
          { tid: tids[2]!, records: [{ oid: 2n, data: pickle("0000000000000002") }] },
          { tid: tids[3]!, records: [{ oid: 3n, data: Buffer.from("\x80\x03K\x05.\x80\x03N.", "latin1") }] },
          { tid: tids[4]!, records: [{ oid: 5n, data: unfoldingBomb }] }
        ])
        // and a last transaction cut off in the middle (a crash during its commit)
        const tail = buildDataFs([{ tid: 0x03e0000000000009n, records: [{ oid: 4n, data: pickle("0000000000000002") }] }])
        const path = NodePath.join(dir, "Data.fs")
        NodeFs.writeFileSync(path, Buffer.concat([built.bytes, tail.bytes.subarray(4, 4 + 30)]))
        const config = writeConfig(dir, { source: filestorageSection(path), db })

        const result = yield* zodbConvert([config, "--progress", "plain"])
        assert.strictEqual(result.code, 1, result.stderr)
        assert.match(result.stderr, new RegExp(`transaction ${hex(tids[1]!)} oid ${hex(1n)} at byte \\d+: the record cannot be decoded: .*opcode`, "i"))
        assert.match(result.stderr, new RegExp(`transaction ${hex(tids[3]!)} oid ${hex(3n)}`))
        assert.match(result.stderr, new RegExp(`transaction ${hex(tids[4]!)} oid ${hex(5n)} at byte \\d+: the record cannot be decoded: .*unfolds`))
        assert.match(result.stderr, /not a committed transaction and are ignored/)
        assert.notMatch(result.stderr, /at .*\.js:\d+/) // no stack trace

        const log = yield* sql<{ tid: string }>`SELECT tid::text AS tid FROM transaction_log ORDER BY tid`
        assert.deepStrictEqual(log.map((r) => BigInt(r.tid)), [tids[0], tids[2]])
        const states = yield* sql<{ zoid: string }>`SELECT zoid::text AS zoid FROM object_state ORDER BY zoid`
        assert.deepStrictEqual(states.map((r) => r.zoid), ["0", "2"])
        // the watermark never passes the first failure (it may stop below it), so a rerun tries it again
        const [wm] = yield* sql<{ tid: string }>`SELECT tid::text AS tid FROM zodb_convert_watermark`
        assert.isTrue(wm === undefined || BigInt(wm.tid) < tids[1]!, String(wm?.tid))

        const rerun = yield* zodbConvert([config, "--incremental"])
        assert.strictEqual(rerun.code, 1, rerun.stderr)
        assert.match(rerun.stderr, /3 transaction\(s\) not copied/)
        const again = yield* sql<{ n: string }>`SELECT count(*)::text AS n FROM transaction_log`
        assert.strictEqual(again[0]!.n, "2")
      })))

    it.effect("--strict refuses records whose JSON would lose information; without it they are written and reported", () =>
      fresh(Effect.gen(function*() {
        const db = yield* TestDatabase
        const dir = yield* scopedTempDir("zodb-strict-")
        const main = writeConfig(dir, {
          source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`),
          db
        })
        const strict = yield* zodbConvert([main, "--strict", "--codec-form", "codec"])
        assert.strictEqual(strict.code, 1, strict.stderr)
        assert.match(strict.stderr, /--strict: its JSON would lose information/)
        // without --strict the rerun writes them, and names each by tid and zoid in its summary
        const lenient = yield* zodbConvert([main, "--incremental", "--codec-form", "codec"])
        assert.strictEqual(lenient.code, 0, lenient.stderr)
        assert.match(lenient.stderr, /LOSS tid [0-9a-f]{16} zoid 0000000000000017: class-lost/)
      })))

    it.effect("config problems exit 2 naming the file, line and key; an unreachable server exits 2 without its password", () =>
      fresh(Effect.gen(function*() {
        const db = yield* TestDatabase
        const dir = yield* scopedTempDir("zodb-config-")
        const typo = NodePath.join(dir, "typo.conf")
        NodeFs.writeFileSync(typo, `<filestorage source>\n  path ${fixtures}/filestorage/Data.fs\n</filestorage>\n<pgjsonb destination>\n  dsn dbname=x\n  blob_treshold 1MB\n</pgjsonb>\n`)
        const t = yield* zodbConvert([typo])
        assert.strictEqual(t.code, 2, t.stderr)
        assert.match(t.stderr, /typo\.conf:6: unknown key "blob_treshold" in <pgjsonb>.*blob-threshold/)

        const missing = yield* zodbConvert([NodePath.join(dir, "nope.conf")])
        assert.strictEqual(missing.code, 2, missing.stderr)
        assert.match(missing.stderr, /nope\.conf/)

        // a Data.fs that is not there: the key to correct
        const noFile = NodePath.join(dir, "nofile.conf")
        NodeFs.writeFileSync(noFile, `<filestorage source>\n  path ${dir}/missing/Data.fs\n</filestorage>\n<pgjsonb destination>\n  dsn ${keywordDsn(db)}\n</pgjsonb>\n`)
        const n = yield* zodbConvert([noFile])
        assert.strictEqual(n.code, 2, n.stderr)
        assert.include(n.stderr, `nofile.conf:2: path in <filestorage>: ${dir}/missing/Data.fs: no such file`)

        const unreachable = NodePath.join(dir, "unreachable.conf")
        NodeFs.writeFileSync(unreachable, `<filestorage source>\n  path ${fixtures}/filestorage/Data.fs\n</filestorage>\n<pgjsonb destination>\n  dsn host=127.0.0.1 port=1 dbname=x user=u password=sekrit99\n</pgjsonb>\n`)
        const u = yield* zodbConvert([unreachable])
        assert.strictEqual(u.code, 2, u.stderr)
        // the setting by its key, file and line; the fix on a line of its own
        assert.match(u.stderr, /PostgreSQL \(dsn of <pgjsonb> at .*unreachable\.conf:5\): cannot connect to u@127\.0\.0\.1:1\/x/)
        assert.match(u.stderr, /\n  help: check the host and port in dsn of <pgjsonb> at .*unreachable\.conf:5:/)
        assert.notMatch(u.stderr + u.stdout, /sekrit99/)
      })))

    it.effect("a destination that is not zodb-pgjsonb's (RelStorage's object_state) exits 2 naming the table and the fix, writing nothing", () =>
      fresh(Effect.gen(function*() {
        const db = yield* TestDatabase
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-notpgjsonb-")
        yield* sql`CREATE TABLE object_state (zoid bigint NOT NULL, tid bigint NOT NULL, prev_tid bigint NOT NULL, md5 char(32),
          state_size bigint NOT NULL, state bytea, PRIMARY KEY (zoid))`
        const config = writeConfig(dir, { source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`), db })
        const result = yield* zodbConvert([config])
        assert.strictEqual(result.code, 2, result.stderr)
        assert.match(result.stderr, /object_state is not zodb-pgjsonb's \(columns .*prev_tid.*\): this is RelStorage's object_state/)
        assert.include(result.stderr, "\n  help: zodb-convert writes only into an empty database or one that zodb-pgjsonb created: point the dsn of " +
          "<pgjsonb destination> at such a database")
        const tables = yield* sql<{ readonly name: string }>`SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public'`
        assert.deepStrictEqual(tables.map((t) => t.name), ["object_state"])
      })))

    it.effect("--dry-run counts what the copy would read and where blobs would go, and writes nothing", () =>
      fresh(Effect.gen(function*() {
        const db = yield* TestDatabase
        const sql = yield* SqlClient.SqlClient
        const dir = yield* scopedTempDir("zodb-dry-")
        const config = writeConfig(dir, {
          source: filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`),
          db,
          blobThreshold: "100KB"
        })
        const result = yield* zodbConvert([config, "--dry-run"])
        assert.strictEqual(result.code, 0, result.stderr)
        assert.match(result.stdout, /12 transactions, 317 records \(2 without data\)/)
        assert.match(result.stdout, /blobs: 7 /)
        assert.match(result.stdout, /0 record\(s\) cannot be converted/)
        const tables = yield* sql`SELECT 1 FROM information_schema.tables WHERE table_schema = 'public'`
        assert.strictEqual(tables.length, 0)
      })))
  }
})
