// `lo-migrate migrate` end to end through the executable, against the tests' real PostgreSQL (as an
// ordinary role) and s3rver: the original's successful-migration case, resume, failures, refusals.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows, setJobActive } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"

const KiB = 1024
const MiB = 1024 * KiB

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** The flags that point the CLI at this test's database and bucket. */

const freshTempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-test-tmp-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** Every migrated row has sha2 = SHA-256 of its bytes, and S3 holds those bytes, type and metadata. */
const assertMigrated = (objects: ReadonlyArray<InsertedObject & { readonly mime: string }>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const rows = new Map((yield* readRows).map((r) => [r.hash, r]))
    for (const o of objects) {
      assert.strictEqual(rows.get(o.hash)?.sha2, o.sha256, `sha2 of ${o.hash}`)
      const stored = yield* s3.getObject(o.sha256!)
      assert.isTrue(Option.isSome(stored), `object ${o.sha256} in S3`)
      const got = Option.getOrThrow(stored)
      assert.strictEqual(Buffer.compare(Buffer.from(got.bytes), Buffer.from(o.bytes!)), 0, `bytes of ${o.sha256}`)
      assert.strictEqual(got.contentType, o.mime)
      assert.strictEqual(got.metadata.sha256, o.sha256)
      assert.strictEqual(got.metadata.sha1, o.sha1)
      assert.strictEqual(got.metadata.oid, String(o.oid))
    }
  })

describe("lo-migrate migrate", () => {
  it.live("migrates objects of every size class, then finds nothing left to do", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const specs = [
        { bytes: randomBytes(0, 1), mime: "application/pdf" },
        { bytes: randomBytes(12, 2), mime: "text/plain" },
        { bytes: randomBytes(81, 3), mime: "image/png" },
        { bytes: randomBytes(125, 4), mime: "text/html; charset=utf-8" },
        // just over --in-mem-max (1 KiB): staged in a temp file
        { bytes: randomBytes(KiB + 1, 5), mime: "application/octet-stream" },
        // over the part size (5 MiB): multipart, 3 parts
        { bytes: randomBytes(11 * MiB + 7, 6), mime: "video/mp4" }
      ]
      const objects = []
      for (const spec of specs) objects.push({ ...(yield* insertObject(spec)), mime: spec.mime })
      const done = randomBytes(50, 7)
      const already = yield* insertObject({ bytes: done, sha2: "f".repeat(64) })
      const tmp = yield* freshTempDir

      const args = [
        "migrate",
        ...(yield* target),
        "--in-mem-max", "1",
        "--upload-chunk-size", "5120",
        // 768 KiB reads: the 11 MiB object takes 15 of them, their edges nowhere near the parts'
        "--read-chunk-size", "768",
        "--commit-chunk", "2",
        "--temp-dir", tmp,
        "--interval", "1"
      ]
      const first = yield* runCli(args)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stderr, "read chunk size:   768 KiB")
      assert.include(first.stdout, "migrated 6 object(s)")
      assert.include(first.stdout, "1 of 7 were already migrated")
      assert.include(first.stdout, "Migration completed")
      assert.include(first.stderr, "**************** configuration ****************")
      assert.include(first.stderr, "(final stats)")
      yield* assertMigrated(objects)
      // the row migrated before the run was not touched, and no object was written for it
      const rows = yield* readRows
      assert.strictEqual(rows.find((r) => r.hash === already.hash)?.sha2, "f".repeat(64))
      const keys = yield* (yield* TestS3).listKeys()
      assert.deepStrictEqual([...keys].sort(), objects.map((o) => o.sha256!).sort())
      assert.deepStrictEqual(NodeFs.readdirSync(tmp), [], "no temp file left")

      const second = yield* runCli(args)
      assert.strictEqual(second.code, 0, second.stderr)
      assert.include(second.stdout, "migrated 0 object(s)")
      assert.include(second.stdout, "7 of 7 were already migrated")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("skips and names rows it cannot migrate, migrates the rest, exits 1", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const good = yield* insertObject({ bytes: randomBytes(300, 10) })
      const sizeMismatch = yield* insertObject({ bytes: randomBytes(200, 11), size: 199 })
      const sha1Mismatch = yield* insertObject({ bytes: randomBytes(200, 12), hash: "0123456789abcdef0123456789abcdef01234567" })
      const nullData = yield* insertObject({ bytes: null })
      const dangling = yield* insertObject({ bytes: randomBytes(10, 13) })
      yield* sql`SELECT lo_unlink(${dangling.oid})`
      const malformed = yield* insertObject({ bytes: randomBytes(10, 14), hash: "not-a-sha1" })

      const result = yield* runCli(["migrate", ...(yield* target)])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.include(result.stdout, "migrated 1 object(s)")
      assert.include(result.stdout, "5 failed")
      const expectations: ReadonlyArray<[string, string]> = [
        [sizeMismatch.hash, "size-mismatch"],
        [sha1Mismatch.hash, "sha1-mismatch"],
        [nullData.hash, "null-data"],
        [dangling.hash, "missing-object"],
        [malformed.hash.trim(), "malformed-key"]
      ]
      for (const [hash, reason] of expectations) {
        assert.match(result.stderr, new RegExp(`FAILED ${hash}.*: ${reason}:`), `${reason} named`)
      }
      const rows = new Map((yield* readRows).map((r) => [r.hash.trim(), r.sha2]))
      assert.strictEqual(rows.get(good.hash), good.sha256)
      for (const [hash] of expectations) assert.isNull(rows.get(hash) ?? null, `${hash} not marked`)
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [good.sha256!])
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a run killed at any moment and started again finishes the job", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      const objects = []
      for (let i = 0; i < 400; i++) objects.push({ ...(yield* insertObject({ bytes: randomBytes(16 * KiB + i, 100 + i) })), mime: "application/octet-stream" })
      const args = ["migrate", ...(yield* target), "--commit-chunk", "10", "--storer-threads", "2"]

      // kill -9 once some rows are committed but (most likely) not all
      const killed = yield* runCli(args, {
        onStart: (child) => {
          const timer = setInterval(() => {
            Effect.runPromise(
              sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`.pipe(
                Effect.catch(() => Effect.succeed([{ n: 0n }]))
              )
            ).then(([r]) => {
              if (Number(r!.n) >= 20) {
                clearInterval(timer)
                child.kill("SIGKILL")
              }
            }, () => undefined)
          }, 20)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const partial = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.isAbove(partial, 0)
      assert.isBelow(partial, 400)

      const resumed = yield* runCli(args)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, `migrated ${400 - partial} object(s)`)
      yield* assertMigrated(objects)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--finalize makes sha2 NOT NULL and unique after a clean run", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(10, 20) })
      yield* insertObject({ bytes: randomBytes(20, 21) })
      const result = yield* runCli(["migrate", ...(yield* target), "-f"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "Adding NOT NULL constraint and UNIQUE INDEX ... done")
      const [column] = yield* sql<{ attnotnull: boolean }>`
        SELECT attnotnull FROM pg_attribute WHERE attrelid = '_nice_binary'::regclass AND attname = 'sha2'`
      assert.isTrue(column!.attnotnull)
      const indexes = yield* sql<{ indexname: string }>`SELECT indexname FROM pg_indexes WHERE indexname = '_nice_binary_sha2_key'`
      assert.strictEqual(indexes.length, 1)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("--finalize is skipped when a row failed", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(10, 30) })
      yield* insertObject({ bytes: null })
      const result = yield* runCli(["migrate", ...(yield* target), "--finalize"])
      assert.strictEqual(result.code, 1)
      const [column] = yield* sql<{ attnotnull: boolean }>`
        SELECT attnotnull FROM pg_attribute WHERE attrelid = '_nice_binary'::regclass AND attname = 'sha2'`
      assert.isFalse(column!.attnotnull)
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("lo-migrate migrate refuses to start (exit 2) when", () => {
  const refused = (args: ReadonlyArray<string>, message: RegExp | string, setup: Effect.Effect<void, unknown, SqlClient.SqlClient> = createNice2Schema()) =>
    Effect.gen(function*() {
      yield* setup
      const result = yield* runCli(["migrate", ...args])
      assert.strictEqual(result.code, 2, `exit code; stderr: ${result.stderr}`)
      if (typeof message === "string") assert.include(result.stderr, message)
      else assert.match(result.stderr, message)
      return result
    })

  it.live("the delete batch job is active, or its row is missing", () =>
    Effect.gen(function*() {
      const args = yield* target
      const active = yield* refused(args, /DeleteUnreferencedBinariesBatchJob is active/, Effect.andThen(createNice2Schema(), setJobActive(true)))
      assert.include(active.stderr, "help: deactivate it before migrating (in Nice2, or: UPDATE nice_batch_job SET active = false " +
        "WHERE id = 'nice2.dms.DeleteUnreferencedBinariesBatchJob';)")
      const sql = yield* SqlClient.SqlClient
      yield* sql`DELETE FROM nice_batch_job`
      const result = yield* runCli(["migrate", ...args])
      assert.strictEqual(result.code, 2)
      assert.match(result.stderr, /DeleteUnreferencedBinariesBatchJob has no row/)
      assert.include(result.stderr, "help: add its row with active = false (e.g. INSERT INTO nice_batch_job (id, active) VALUES " +
        "('nice2.dms.DeleteUnreferencedBinariesBatchJob', false);")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the table does not exist", () =>
    Effect.gen(function*() {
      const missing = yield* refused(yield* target, "table _nice_binary: does not exist", Effect.void)
      assert.include(missing.stderr, "help: give --pg-url the Nice2 database")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the bucket does not exist, or the S3 credentials are wrong", () =>
    Effect.gen(function*() {
      const args = [...(yield* target)]
      const bucketAt = args.indexOf("--bucket") + 1
      const noBucket = [...args]
      noBucket[bucketAt] = "no-such-bucket-here"
      const missing = yield* refused(noBucket, "S3 bucket no-such-bucket-here: does not exist")
      // the fix: the command that creates it, on this endpoint, or the flag to correct
      const s3 = yield* TestS3
      assert.include(missing.stderr, `help: create it first (e.g. aws s3 mb s3://no-such-bucket-here --endpoint-url ${s3.endpoint}), or correct --bucket`)
      // s3rver checks the access key id but not SigV4 signatures, so a wrong secret cannot be shown here
      const badKey = [...args]
      badKey[args.indexOf("--access-key") + 1] = "NO-SUCH-KEY-ID"
      badKey[args.indexOf("--secret-key") + 1] = "wrong-secret-value"
      const result = yield* refused(badKey, /credentials rejected .*InvalidAccessKeyId/, Effect.void)
      assert.include(result.stderr, "help: check --access-key and --secret-key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)")
      assert.notInclude(result.stderr, "wrong-secret-value")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the PostgreSQL password is wrong or the server is unreachable, without printing the password", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const args = [...(yield* target)]
      const urlAt = args.indexOf("--pg-url") + 1
      const wrong = new URL(db.url)
      wrong.password = "s3cr3t-wrong-pw"
      args[urlAt] = wrong.toString()
      const result = yield* refused(args, /PostgreSQL \(--pg-url\): authentication failed/)
      assert.include(result.stderr, "help: check the user and password in --pg-url")
      assert.notInclude(result.stderr + result.stdout, "s3cr3t-wrong-pw")
      const unreachable = new URL(db.url)
      unreachable.port = "1"
      args[urlAt] = unreachable.toString()
      const down = yield* refused(args, /PostgreSQL \(--pg-url\): cannot connect to/, Effect.void)
      assert.include(down.stderr, "help: check the host and port in --pg-url")
      assert.notInclude(down.stderr, db.password)
      // the same URL from the environment: the message says where it came from
      const fromEnv = yield* runCli(["migrate", ...args.filter((_, i) => i !== urlAt && i !== urlAt - 1)], {
        env: { LO_MIGRATE_PG_URL: unreachable.toString() }
      })
      assert.strictEqual(fromEnv.code, 2, fromEnv.stderr)
      assert.include(fromEnv.stderr, "PostgreSQL (--pg-url from LO_MIGRATE_PG_URL): cannot connect to")
      // no such database
      const noDb = new URL(db.url)
      noDb.pathname = "/no_such_database_here"
      args[urlAt] = noDb.toString()
      const missing = yield* refused(args, /database "no_such_database_here" does not exist/, Effect.void)
      assert.include(missing.stderr, "help: check the database name in --pg-url")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a flag has a bad value", () =>
    Effect.gen(function*() {
      const args = yield* target
      yield* refused([...args, "--upload-chunk-size", "4096"], "invalid setting --upload-chunk-size: 4096 is below the minimum of 5120")
      yield* refused([...args, "--storer-threads", "0"], "invalid setting --storer-threads", Effect.void)
      yield* refused([...args, "--commit-chunk", "lots"], /commit-chunk/, Effect.void)
      // effect/cli's own refusal, and the other ways to give the flag
      const noBucket = yield* refused(args.filter((_, i) => i < args.indexOf("--bucket")), /Missing required flag: --bucket/, Effect.void)
      assert.include(noBucket.stderr, `lo-migrate: help: give --bucket, set LO_MIGRATE_BUCKET, or "bucket" in the --config file`)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("settings come from the environment when flags are absent, and a flag wins", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const o = yield* insertObject({ bytes: randomBytes(64, 40) })
      const result = yield* runCli(["migrate", "--bucket", s3.bucket], {
        env: {
          LO_MIGRATE_PG_URL: db.url,
          LO_MIGRATE_S3_URL: s3.endpoint,
          LO_MIGRATE_BUCKET: "overridden-by-the-flag",
          AWS_ACCESS_KEY_ID: s3.accessKey,
          AWS_SECRET_ACCESS_KEY: s3.secretKey
        }
      })
      assert.strictEqual(result.code, 0, result.stderr)
      assert.isTrue(Option.isSome(yield* s3.getObject(o.sha256!)))
    }).pipe(Effect.scoped, Effect.provide(env)))
})
