// The commands end to end through the executable against a real Ceph RGW (16.2, one memstore OSD,
// started once per run by test/support/rgwSetup.ts): the mixed data set with multipart objects in
// memory and from temp files, reruns, verify at every level, prune, a run killed with SIGKILL and
// resumed, and RGW itself answering 503 SlowDown (a second radosgw with rgw_max_concurrent_requests 2).
// Every check reads the bytes back from RGW.
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3"
import { assert, beforeAll, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import { multipartEtag } from "../../src/s3/S3Store.ts"
import { runCli } from "../support/Cli.ts"
import { killWhen } from "../support/Deferred.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "../support/Nice2Fixture.ts"
import { TestDatabase } from "../support/Postgres.ts"
import * as FaultProxy from "../support/FaultProxy.ts"
import { awaitRgw, describeRgw, extraRgw, rgwIsOurs, TestRgw } from "../support/Rgw.ts"
import { TestS3 } from "../support/S3.ts"
import { target, targetVia } from "../support/Target.ts"
import { assertAllMigrated, assertNoStrayKeys, freshTempDir } from "../support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB
const PART = 5 * MiB

const env = Layer.mergeAll(TestDatabase.layerClient, TestRgw.layer)

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest()

/** The ETag S3 gives `bytes` uploaded in `PART`-sized parts (one part: the plain MD5). */
const expectedEtag = (bytes: Uint8Array) => {
  if (bytes.length <= PART) return md5(bytes).toString("hex")
  const parts: Array<string> = []
  for (let off = 0; off < bytes.length; off += PART) parts.push(md5(bytes.subarray(off, off + PART)).toString("base64"))
  return multipartEtag(parts)
}

/** Every object is in RGW under its SHA-256 with its exact bytes, content type, metadata and ETag. */
const assertStored = (objects: ReadonlyArray<InsertedObject & { readonly mime: string }>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const rows = new Map((yield* readRows).map((r) => [r.hash, r]))
    for (const o of objects) {
      assert.strictEqual(rows.get(o.hash)?.sha2, o.sha256, `sha2 of ${o.hash}`)
      const got = Option.getOrThrow(yield* s3.getObject(o.sha256!))
      assert.isTrue(Buffer.from(got.bytes).equals(Buffer.from(o.bytes!)), `bytes of ${o.sha256} (${o.size} bytes)`)
      assert.strictEqual(got.contentLength, o.size)
      assert.strictEqual(got.contentType, o.mime)
      assert.strictEqual(got.metadata.sha256, o.sha256)
      assert.strictEqual(got.metadata.sha1, o.sha1)
      assert.strictEqual(got.etag?.replace(/"/g, ""), expectedEtag(o.bytes!), `ETag of ${o.size} bytes`)
    }
  })

describeRgw("against Ceph RGW: migrate, verify, prune", () => {
  beforeAll(async () => {
    await awaitRgw()
  }, 200_000)

  it.live("the mixed data set (multipart in memory and from temp files): migrate, rerun, verify at every level, prune", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const specs = [
        { bytes: randomBytes(0, 1), mime: "application/pdf" },
        { bytes: randomBytes(12, 2), mime: "text/plain" },
        { bytes: randomBytes(125, 3), mime: "text/html; charset=utf-8" },
        { bytes: randomBytes(300 * KiB + 1, 4), mime: "image/png" },
        // in memory (under --in-mem-max 6 MiB), over the 5 MiB part size: 2 parts sent from memory
        { bytes: randomBytes(5 * MiB + 512 * KiB, 5), mime: "video/mp4" },
        // over --in-mem-max: a temp file, 3 parts streamed from it
        { bytes: randomBytes(11 * MiB + 7, 6), mime: "application/octet-stream" }
      ]
      const objects = []
      for (const spec of specs) objects.push({ ...(yield* insertObject(spec)), mime: spec.mime })
      for (let i = 0; i < 40; i++) objects.push({ ...(yield* insertObject({ bytes: randomBytes(100 + i * 97, 100 + i) })), mime: "application/octet-stream" })
      const tmp = yield* freshTempDir
      const args = [
        "migrate", ...(yield* target),
        "--in-mem-max", "6144", "--upload-chunk-size", "5120", "--commit-chunk", "8", "--temp-dir", tmp
      ]
      const first = yield* runCli(args)
      assert.strictEqual(first.code, 0, first.stderr)
      assert.include(first.stdout, `migrated ${objects.length} object(s)`)
      yield* assertStored(objects)
      yield* assertNoStrayKeys
      const again = yield* runCli(args)
      assert.strictEqual(again.code, 0, again.stderr)
      assert.include(again.stdout, "migrated 0 object(s)")
      assert.include(again.stdout, `${objects.length} of ${objects.length} were already migrated`)

      const verify = ["verify", ...(yield* target)]
      for (const level of [[], ["--deep"], ["--against-source"]]) {
        const verified = yield* runCli([...verify, ...level])
        assert.strictEqual(verified.code, 0, `${level.join(" ")}: ${verified.stderr}`)
        assert.include(verified.stdout, `${objects.length} good, 0 bad`)
      }
      // one object's bytes changed in RGW (same size, same metadata): only --deep and --against-source see it
      const victim = objects[3]!
      const flipped = Uint8Array.from(victim.bytes!, (b, i) => (i === 7 ? b ^ 0xff : b))
      yield* s3.putObject(victim.sha256!, flipped, { metadata: { sha256: victim.sha256!, sha1: victim.sha1! } })
      const head = yield* runCli(verify)
      assert.strictEqual(head.code, 0, head.stderr)
      const deep = yield* runCli([...verify, "--deep"])
      assert.strictEqual(deep.code, 1, deep.stderr)
      assert.include(deep.stdout, `BAD ${victim.hash}`)
      assert.include(deep.stdout, "content-mismatch")
      assert.include(deep.stdout, `${objects.length - 1} good, 1 bad`)

      // prune keeps the large object whose copy is bad and unlinks the rest
      const pruned = yield* runCli(["prune", ...(yield* target), "--deep", "--yes"])
      assert.strictEqual(pruned.code, 1, pruned.stderr)
      assert.include(pruned.stdout, `released ${objects.length - 1} row(s)`)
      const rows = new Map((yield* readRows).map((r) => [r.hash, r]))
      assert.strictEqual(rows.get(victim.hash)?.data, victim.oid, "the bad copy's large object is kept")
      const [left] = yield* sql<{ n: bigint }>`SELECT count(*) AS n FROM pg_largeobject_metadata`
      assert.strictEqual(Number(left!.n), 1, "only the bad copy's large object is left")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a run killed with SIGKILL in the middle (multipart uploads in flight) and run again finishes exactly", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      // enough multipart objects that one is still open when four rows are marked, however fast RGW is
      for (let i = 0; i < 16; i++) objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB + i * 1000, 300 + i) }))
      for (let i = 0; i < 100; i++) objects.push(yield* insertObject({ bytes: randomBytes(2 * KiB + i * 13, 400 + i) }))
      const args = ["migrate", ...(yield* target), "--upload-chunk-size", "5120", "--commit-chunk", "4", "--storer-threads", "4"]
      // killed once some rows are committed and a multipart upload is open on RGW
      const openUploads = s3.use("ListMultipartUploads", (c) => c.send(new ListMultipartUploadsCommand({ Bucket: s3.bucket }))).pipe(
        Effect.map((r) => r.Uploads?.length ?? 0)
      )
      const marked = sql<{ n: bigint }>`SELECT count(*) AS n FROM _nice_binary WHERE sha2 IS NOT NULL`.pipe(
        Effect.map(([r]) => Number(r!.n))
      )
      const inTheMiddle = Effect.gen(function*() {
        return (yield* marked) >= 4 && (yield* openUploads) > 0
      })
      const killed = yield* runCli(args, { onStart: killWhen(inTheMiddle) })
      assert.strictEqual(killed.signal, "SIGKILL", `killed mid-run; stdout: ${killed.stdout}`)
      const partial = (yield* readRows).filter((r) => r.sha2 !== null).length
      assert.isAbove(partial, 0)
      assert.isBelow(partial, objects.length)

      const resumed = yield* runCli(args)
      assert.strictEqual(resumed.code, 0, resumed.stderr)
      assert.include(resumed.stdout, `migrated ${objects.length - partial} object(s)`)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
      const deep = yield* runCli(["verify", ...(yield* target), "--deep"])
      assert.strictEqual(deep.code, 0, deep.stderr)
      assert.include(deep.stdout, `${objects.length} good, 0 bad`)
      // what the kill left behind: the multipart upload(s) in flight stay open on RGW (the tool does not
      // list them; a bucket lifecycle rule AbortIncompleteMultipartUpload cleans them up)
      assert.isAbove(yield* openUploads, 0, "the kill left a multipart upload open")
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live.skipIf(!rgwIsOurs())("RGW answering 503 SlowDown itself (rgw_max_concurrent_requests 2): the tool slows down, retries and finishes exactly", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB + 11, 500) }))
      for (let i = 0; i < 150; i++) objects.push(yield* insertObject({ bytes: randomBytes(4 * KiB + i * 61, 501 + i) }))
      const throttled = yield* extraRgw("throttled", { rgw_max_concurrent_requests: 2 })
      // a recording proxy in front of it: the SlowDowns are RGW's own answers (no rule fires)
      const proxy = yield* FaultProxy.make({ upstream: throttled.endpoint })
      // 16 storers start with 64 permits, halved at most once a second: until the limit is down to RGW's 2,
      // one request was refused up to 4 times of the 6 attempts --retries allows by default (README,
      // "Slowing down when S3 asks"); 10 keep a loaded CI machine from turning that into a failure
      const result = yield* runCli([
        "migrate", ...(yield* targetVia(proxy.endpoint)), "--storer-threads", "16", "--upload-chunk-size", "5120", "--retries", "10"
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      const slowDowns = (yield* proxy.log).filter((r) => r.status === 503 && r.errorCode === "SlowDown" && r.fault === undefined)
      assert.isAtLeast(slowDowns.length, 1, "RGW answered SlowDown")
      assert.include(result.stderr, "S3 asked to slow down")
      assert.include(result.stdout, `migrated ${objects.length} object(s)`)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
      const perRequest = new Map<string, number>()
      for (const r of slowDowns) perRequest.set(`${r.method} ${r.path}`, (perRequest.get(`${r.method} ${r.path}`) ?? 0) + 1)
      console.log(
        `RGW answered SlowDown ${slowDowns.length} time(s) of ${(yield* proxy.log).length} requests; ` +
          `at most ${Math.max(...perRequest.values())} time(s) to one request`
      )
    }).pipe(Effect.scoped, Effect.provide(env)))
})
