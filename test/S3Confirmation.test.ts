// An S3 answer that says "stored" is not taken at its word unless it proves the bytes: a
// CompleteMultipartUpload answering 200 with an <Error> body (S3 documents this; the SDK misses it when
// the body ends with a newline) or a result without an ETag, a PUT answering 200 without an ETag. The
// object is confirmed by a HEAD (it exists, its size, an ETag of the right form) before its row may be
// marked; a failed confirmation is retried. Before, such rows were marked while S3 held no object.
// Real executable, real PostgreSQL, s3rver behind a proxy that lies.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, faults } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, assertNothingMarked } from "./support/Verify.ts"

const MiB = 1024 * 1024
const env = FaultProxy.layerWith({ seed: 3 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

/** POST /bucket/key?uploadId=…: CompleteMultipartUpload (CreateMultipartUpload is POST ?uploads). */
const complete = /\/[0-9a-f]{64}\?uploadId=/
/** PUT of a whole object (no partNumber): a single PutObject (the SDK adds ?x-id=PutObject). */
const singlePut = /\/[0-9a-f]{64}(\?x-id=PutObject)?$/
/** any request on an object key */
const objectPath = /\/[0-9a-f]{64}(\?|$)/

const errorIn200 = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>lie</RequestId></Error>\n`
const resultWithoutEtag = `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult><Location>http://x/b/k</Location><Bucket>b</Bucket><Key>k</Key></CompleteMultipartUploadResult>`

const viaProxy = Effect.flatMap(FaultProxy, (proxy) => targetVia(proxy.endpoint))

const data = Effect.gen(function*() {
  yield* createNice2Schema()
  const objects: Array<InsertedObject> = []
  objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB + 7, 1) }))
  for (let i = 0; i < 5; i++) objects.push(yield* insertObject({ bytes: randomBytes(900 + i, 10 + i) }))
  return objects
})

const migrate = Effect.gen(function*() {
  return yield* runCli(["migrate", ...(yield* viaProxy), "--upload-chunk-size", "5120", "--retries", "4"])
})

describe("S3 answers are proven before a row is marked", () => {
  for (
    const [name, body] of [
      ["a 200 whose body is an <Error> ending with a newline", errorIn200],
      ["a 200 result without an ETag", resultWithoutEtag]
    ] as const
  ) {
    it.live(`CompleteMultipartUpload answering ${name}, without assembling anything: confirmed absent, completed again, then marked`, () =>
      Effect.gen(function*() {
        const proxy = yield* FaultProxy
        const objects = yield* data
        yield* proxy.setRules([{
          name: "lie",
          method: "POST",
          path: complete,
          count: 1,
          fault: { kind: "answer", status: 200, body, headers: { "content-type": "application/xml" } }
        }])
        const result = yield* migrate
        assert.strictEqual(yield* proxy.fired("lie"), 1)
        assert.strictEqual(result.code, 0, result.stderr)
        yield* assertAllMigrated(objects)
        yield* assertNoStrayKeys
        const heads = (yield* proxy.log).filter((r) => r.method === "HEAD" && objectPath.test(r.path))
        assert.isAbove(heads.length, 0, "the completion was checked by HEAD")
      }).pipe(Effect.scoped, Effect.provide(env)))
  }

  it.live("a PUT answering 200 without an ETag and storing nothing: confirmed absent, put again, then marked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "lie", method: "PUT", path: singlePut, count: 2, fault: { kind: "answer", status: 200, body: "" } }])
      const result = yield* migrate
      assert.strictEqual(yield* proxy.fired("lie"), 2)
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("answers without an ETag for objects that were stored: a HEAD confirms each, nothing is sent twice", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const objects = yield* data
      yield* proxy.setRules([{ name: "no-etag", method: "PUT", path: singlePut, fault: { kind: "stripEtag" } }])
      const result = yield* migrate
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      const log = yield* proxy.log
      const puts = log.filter((r) => r.method === "PUT" && singlePut.test(r.path))
      assert.strictEqual(puts.length, 5, "each small object PUT once")
      assert.isAtLeast(log.filter((r) => r.method === "HEAD" && objectPath.test(r.path)).length, 5)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a completion that lies every time: the run ends (exit 1) with nothing marked and the upload aborted", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(6 * MiB + 7, 2) })
      yield* proxy.setRules([{
        name: "lie",
        method: "POST",
        path: complete,
        fault: { kind: "answer", status: 200, body: errorIn200, headers: { "content-type": "application/xml" } }
      }])
      const result = yield* runCli(["migrate", ...(yield* viaProxy), "--upload-chunk-size", "5120", "--retries", "3"])
      assert.strictEqual(result.code, 1, result.stderr)
      assert.match(result.stderr, /lo-migrate: S3 CompleteMultipartUpload [0-9a-f]{64} failed: .*answered success, but has no object/)
      yield* assertNothingMarked
      yield* assertMarkedRowsBacked
      const aborted = (yield* proxy.log).filter((r) => r.method === "DELETE" && /uploadId=/.test(r.path))
      assert.isAbove(aborted.length, 0, "the multipart upload was aborted")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("credentials that may write but not read back (HEAD refused): refused before any work, exit 2, naming s3:GetObject", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* data
      yield* proxy.setRules([{ name: "no-head", method: "HEAD", fault: faults.accessDenied }])
      const result = yield* migrate
      assert.strictEqual(result.code, 2, result.stderr)
      assert.match(result.stderr, /cannot HEAD what it wrote .*s3:GetObject/)
      yield* assertNothingMarked
      assert.deepStrictEqual((yield* proxy.log).filter((r) => r.method === "PUT" && objectPath.test(r.path)), [], "no object sent")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
