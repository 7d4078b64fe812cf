// `--profile relstorage` against the databases RelStorage 4.2 made itself (history-free and
// history-preserving with undo; test/data/zodb/relstorage/, restored with psql as the owner
// role), through the executable, with zodb-pgjsonb's own reading and writing of blob_state checked:
// - s3_key is stored as zodb-pgjsonb stores it (`blobs/{zoid:016x}/{tid:016x}.blob`, no prefix): its S3
//   client finds the object at `{s3-prefix}/{s3_key}` (issue 15.1);
// - the same-database mode says what it is for, and `--for zodb-pgjsonb` refuses it (15.2);
// - `--finalize` puts no constraint on blob_state that zodb-pgjsonb's inline upsert breaks (15.3);
// - prune refuses to delete chunks without an index on blob_chunk(chunk) (RelStorage's delete trigger
//   would scan the table once per deleted row), naming the statement; `--create-chunk-index` creates it (15.4).
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { runCli } from "./support/Cli.ts"
import { TestDatabase } from "./support/Postgres.ts"
import {
  chunkKeys,
  dumpBlobs,
  largeObjectCount,
  type Mode,
  onDatabase,
  readState,
  restoreRelStorage,
  sha256
} from "./support/RelStorageFixture.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const hex16 = (n: bigint) => n.toString(16).padStart(16, "0")
/** what zodb-pgjsonb writes into s3_key (batch.py:186) */
const pgjsonbKey = (zoid: bigint, tid: bigint) => `blobs/${hex16(zoid)}/${hex16(tid)}.blob`
/** zodb-s3blobs' S3Client._full_key: the s3-prefix (trailing "/" stripped) + "/" + s3_key */
const fullKey = (prefix: string, key: string) => (prefix === "" ? key : `${prefix.replace(/\/+$/, "")}/${key}`)
/** zodb-pgjsonb's inline blob upsert, verbatim (batch.py:208-214) */
const pgjsonbInlineUpsert = `INSERT INTO blob_state (zoid, tid, blob_size, data) VALUES ($1, $2, $3, $4)
  ON CONFLICT (zoid, tid) DO UPDATE SET blob_size = EXCLUDED.blob_size, data = EXCLUDED.data`
const chunkIndexStatement = "CREATE INDEX CONCURRENTLY blob_chunk_chunk_idx ON blob_chunk (chunk)"
const threshold = 102400

const constraints = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly name: string; readonly def: string }>`
    SELECT conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
    WHERE conrelid = to_regclass('blob_state') AND contype = 'c'`
  return rows
})
const chunkIndexes = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  const rows = yield* sql<{ readonly def: string }>`SELECT indexdef AS def FROM pg_indexes
    WHERE tablename = 'blob_chunk' AND indexdef LIKE '%(chunk)%'`
  return rows.map((r) => r.def)
})

/** every blob of the dump has its blob_state row: inline below the threshold, else in S3 under zodb-pgjsonb's key */
const assertRecorded = (mode: Mode, prefix: string, state: ReadonlyArray<{
  readonly zoid: string
  readonly tid: string
  readonly blob_size: string
  readonly data: Uint8Array | null
  readonly s3_key: string | null
}>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const blobs = dumpBlobs(mode)
    assert.deepStrictEqual(state.map((r) => `${r.zoid}/${r.tid}`), blobs.map((b) => b.key))
    for (const [i, b] of blobs.entries()) {
      const row = state[i]!
      assert.strictEqual(row.blob_size, String(b.size), b.key)
      if (b.size < threshold) {
        assert.isNull(row.s3_key, b.key)
        assert.strictEqual(sha256(row.data!), b.sha256, b.key)
        continue
      }
      assert.isNull(row.data, b.key)
      assert.strictEqual(row.s3_key, pgjsonbKey(b.zoid, b.tid), `${b.key}: s3_key as zodb-pgjsonb stores it`)
      // where zodb-pgjsonb, configured with this s3-prefix, asks for it
      const stored = Option.getOrThrow(yield* s3.getObject(fullKey(prefix, row.s3_key!)))
      assert.strictEqual(sha256(stored.bytes), b.sha256, b.key)
    }
  })

describe("--profile relstorage on RelStorage 4.2's own databases", () => {
  it.live("15.1 hf: --s3-prefix stays out of s3_key (zodb-pgjsonb's key); the object is where zodb-pgjsonb's S3 client asks; verify adds the prefix back", () =>
    Effect.gen(function*() {
      yield* restoreRelStorage("hf")
      const t = yield* target
      const profile = ["--profile", "relstorage", "--s3-prefix", "zodb1"]
      assert.lengthOf(dumpBlobs("hf"), 5)
      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, "migrated 5 object(s)")
      assert.include(migrated.stderr, "history-free layout")
      yield* assertRecorded("hf", "zodb1", yield* readState)
      const verified = yield* runCli(["verify", ...t, ...profile, "--against-source"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "5 good, 0 bad")
      const again = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "5 of 5 were already migrated")
      // RelStorage's pack deletes object_state rows: blob_chunk_fk (ON DELETE CASCADE) takes the chunk
      // along, and the delete trigger its large object; the migrated copy has nothing left to compare
      const sql = yield* SqlClient.SqlClient
      const objects = yield* largeObjectCount
      yield* sql`DELETE FROM object_state WHERE zoid = ${Number(dumpBlobs("hf")[0]!.zoid)}`
      assert.lengthOf(yield* chunkKeys, 4)
      assert.strictEqual(yield* largeObjectCount, objects - 1)
      const packed = yield* runCli(["verify", ...t, ...profile, "--against-source"])
      assert.strictEqual(packed.code, 0, packed.stderr)
      assert.include(packed.stdout, "5 good, 0 bad; 1 without a large object to compare (pruned)")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("15.2: the same-database mode says what it is for; --for zodb-pgjsonb refuses it, and a destination holding RelStorage's object_state", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const db = yield* TestDatabase
      yield* restoreRelStorage("hf")
      const t = yield* target
      const same = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--for", "zodb-pgjsonb"])
      assert.strictEqual(same.code, 2, same.stderr)
      assert.include(same.stderr, "--dest-pg-url")
      assert.include(same.stderr, "zodb-convert")
      // the RelStorage database itself given as the destination
      const self = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--for", "zodb-pgjsonb", "--dest-pg-url", db.url])
      assert.strictEqual(self.code, 2, self.stderr)
      assert.include(self.stderr, "RelStorage's object_state")
      const [state] = yield* sql<{ readonly present: boolean }>`SELECT to_regclass('blob_state') IS NOT NULL AS present`
      assert.isFalse(state!.present, "no blob_state created")
      // without --for: done, and the log says what the mode is for
      const staged = yield* runCli(["migrate", ...t, "--profile", "relstorage"])
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stderr, "zodb-pgjsonb cannot use this database")
      assert.include(staged.stderr, "zodb-convert")
      const help = yield* runCli(["migrate", "--help"])
      assert.include(help.stdout, "zodb-convert")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("15.3 hf: --finalize adds no constraint; zodb-pgjsonb's own inline upsert over an S3 row still works", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* restoreRelStorage("hf")
      const t = yield* target
      const finalized = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--finalize"])
      assert.strictEqual(finalized.code, 0, finalized.stderr)
      assert.deepStrictEqual(yield* constraints, [])
      // zodb-pgjsonb writes a blob of an S3 row inline (e.g. with a higher blob-threshold): its upsert sets
      // blob_size and data and leaves s3_key, so the row has both
      const s3 = yield* TestS3
      const big = dumpBlobs("hf").find((b) => b.size >= threshold)!
      const bytes = Option.getOrThrow(yield* s3.getObject(pgjsonbKey(big.zoid, big.tid))).bytes
      const upsert = yield* Effect.exit(sql.unsafe(pgjsonbInlineUpsert, [big.zoid, big.tid, bytes.length, bytes]))
      assert.isTrue(Exit.isSuccess(upsert), `zodb-pgjsonb's inline upsert: ${Exit.isFailure(upsert) ? String(upsert.cause) : ""}`)
      const [both] = yield* sql<{ readonly n: bigint }>`SELECT count(*) AS n FROM blob_state WHERE data IS NOT NULL AND s3_key IS NOT NULL`
      assert.strictEqual(Number(both!.n), 1)
      // such a row is zodb-pgjsonb's own: a later --finalize accepts it
      const again = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--finalize"])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.deepStrictEqual(yield* constraints, [])
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("15.4 hf: no index on blob_chunk(chunk): prune refuses before deleting, naming the statement; --create-chunk-index creates it", () =>
    Effect.gen(function*() {
      yield* restoreRelStorage("hf")
      const t = yield* target
      const profile = ["--profile", "relstorage"]
      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      // RelStorage 4.2 has none
      assert.deepStrictEqual(yield* chunkIndexes, [])
      const chunksBefore = yield* chunkKeys
      const objectsBefore = yield* largeObjectCount
      const refused = yield* runCli(["prune", ...t, ...profile, "--yes"])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, chunkIndexStatement)
      assert.include(refused.stderr, "--create-chunk-index")
      assert.deepStrictEqual(yield* chunkKeys, chunksBefore, "nothing deleted")
      assert.strictEqual(yield* largeObjectCount, objectsBefore)
      // a dry run says so and creates nothing
      const dry = yield* runCli(["prune", ...t, ...profile, "--create-chunk-index"])
      assert.strictEqual(dry.code, 0, dry.stderr)
      assert.include(dry.stdout, "would release 5 row(s)")
      assert.include(dry.stderr, `would run ${chunkIndexStatement}`)
      assert.deepStrictEqual(yield* chunkIndexes, [])

      const pruned = yield* runCli(["prune", ...t, ...profile, "--yes", "--create-chunk-index"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.include(pruned.stderr, `created the index: ${chunkIndexStatement}`)
      assert.deepStrictEqual(yield* chunkIndexes, ["CREATE INDEX blob_chunk_chunk_idx ON public.blob_chunk USING btree (chunk)"])
      assert.include(pruned.stdout, "released 5 row(s) (chunks deleted)")
      assert.include(pruned.stdout, "unlinked 5 large object(s)")
      assert.deepStrictEqual(yield* chunkKeys, [])
      assert.strictEqual(yield* largeObjectCount, 0)
      // with the index there, prune goes on without the flag
      const rerun = yield* runCli(["prune", ...t, ...profile, "--yes"])
      assert.strictEqual(rerun.code, 0, rerun.stderr)
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("hp with undo, --dest-pg-url --for zodb-pgjsonb: every revision recorded, the undo's shared large object unlinked last", () =>
    Effect.gen(function*() {
      yield* restoreRelStorage("hp")
      const t = yield* target
      const other = Context.get(yield* Layer.build(Layer.fresh(TestDatabase.layer)), TestDatabase)
      const profile = ["--profile", "relstorage", "--s3-prefix", "zodb1/", "--dest-pg-url", other.url, "--for", "zodb-pgjsonb"]
      const blobs = dumpBlobs("hp")
      assert.lengthOf(blobs, 7)

      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      assert.include(migrated.stdout, "migrated 7 object(s)")
      assert.include(migrated.stderr, "history-preserving layout")
      assert.notInclude(migrated.stderr, "zodb-pgjsonb cannot use this database")
      yield* assertRecorded("hp", "zodb1", yield* onDatabase(other.url)(readState))

      const verified = yield* runCli(["verify", ...t, ...profile, "--against-source"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "7 good, 0 bad")

      const refused = yield* runCli(["prune", ...t, ...profile, "--yes"])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, chunkIndexStatement)
      assert.lengthOf(yield* chunkKeys, 7)
      // 6 large objects for 7 chunk rows: the undo of "second revision of small" reuses the first one's
      assert.strictEqual(yield* largeObjectCount, 6)
      const pruned = yield* runCli(["prune", ...t, ...profile, "--yes", "--create-chunk-index", "--batch-size", "1"])
      assert.strictEqual(pruned.code, 0, pruned.stderr)
      assert.include(pruned.stdout, "released 7 row(s) (chunks deleted)")
      assert.include(pruned.stdout, "unlinked 6 large object(s)")
      assert.match(pruned.stdout, /KEPT large object \d+: still referenced by 299\//)
      assert.deepStrictEqual(yield* chunkKeys, [])
      assert.strictEqual(yield* largeObjectCount, 0)

      const finalized = yield* runCli(["migrate", ...t, ...profile, "--finalize"])
      assert.strictEqual(finalized.code, 0, finalized.stderr)
      assert.deepStrictEqual(yield* onDatabase(other.url)(constraints), [])
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("rows an earlier version wrote with the prefix in s3_key still verify; --finalize rewrites them to zodb-pgjsonb's key and drops the old CHECK", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* restoreRelStorage("hf")
      const t = yield* target
      const profile = ["--profile", "relstorage", "--s3-prefix", "zodb1"]
      const migrated = yield* runCli(["migrate", ...t, ...profile])
      assert.strictEqual(migrated.code, 0, migrated.stderr)
      // as lo-migrate before this fix wrote them: the prefix inside s3_key, and finalize's CHECK
      yield* sql`UPDATE blob_state SET s3_key = 'zodb1/' || s3_key WHERE s3_key IS NOT NULL`
      yield* sql`ALTER TABLE blob_state ADD CONSTRAINT blob_state_data_xor_s3_key CHECK ((data IS NULL) <> (s3_key IS NULL))`

      const verified = yield* runCli(["verify", ...t, ...profile, "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "5 good, 0 bad")
      assert.include(verified.stderr, "2 blob_state row(s) hold their S3 key with a prefix")
      const plan = yield* runCli(["plan", ...t, ...profile, "--sample", "0"])
      assert.strictEqual(plan.code, 0, plan.stderr)
      assert.include(plan.stdout, "2 blob_state row(s) hold their S3 key with a prefix")

      // another prefix than the one they were written with: refused, nothing changed
      const wrong = yield* runCli(["migrate", ...t, "--profile", "relstorage", "--s3-prefix", "other", "--finalize"])
      assert.strictEqual(wrong.code, 2, wrong.stderr)
      assert.include(wrong.stderr, "zodb1/blobs/")
      assert.lengthOf(yield* constraints, 1)

      const finalized = yield* runCli(["migrate", ...t, ...profile, "--finalize"])
      assert.strictEqual(finalized.code, 0, finalized.stderr)
      assert.include(finalized.stderr, "dropped CHECK constraint blob_state_data_xor_s3_key")
      assert.include(finalized.stderr, "2 s3_key value(s) rewritten without the prefix")
      assert.deepStrictEqual(yield* constraints, [])
      yield* assertRecorded("hf", "zodb1", yield* readState)
      const again = yield* runCli(["verify", ...t, ...profile])
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "5 good, 0 bad")
      assert.notInclude(again.stderr, "with a prefix")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)
})
