// What Ceph RGW 16 enforces, and that the tool's proof of the bytes holds on it (docs/s3-servers.md):
// - A body damaged in transit (a proxy flips one byte and keeps the headers) is refused by RGW itself:
//   a body streamed from a temp file (a single PUT or a part: UNSIGNED-PAYLOAD) by its Content-MD5
//   (BadDigest); a body sent from memory, which the SDK also signs (x-amz-content-sha256 = its SHA-256),
//   by that hash first (XAmzContentSHA256Mismatch). The tool retries and the object ends up right.
//   When it never gets through, the error names the code and what it means (RGW sends no message).
// - x-amz-checksum-sha256 is ignored: a wrong value is accepted and stored.
// - The SDK's checksum defaults would break it: streamed bodies go out aws-chunked and RGW answers 411
//   MissingContentLength. The tool streams temp files and parts with a Content-Length and succeeds.
// - The SDK's own console line for failed streamed requests stays out of stderr at the default level.
import { CreateMultipartUploadCommand, PutObjectCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3"
import { assert, beforeAll, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import { runCli } from "../support/Cli.ts"
import { FaultProxy, type ProxyRequestLog } from "../support/FaultProxy.ts"
import { createNice2Schema, insertObject, randomBytes, readRows } from "../support/Nice2Fixture.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { awaitRgw, describeRgw, TestRgw } from "../support/Rgw.ts"
import { TestS3 } from "../support/S3.ts"
import { targetVia } from "../support/Target.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, freshTempDir } from "../support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB

const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestRgw.layer)))

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("base64")
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("base64")

const sdkStreamingLine = "An error was encountered in a non-retryable streaming request"

/** The test's RGW, through a client configured as the tool's is, or with the SDK's checksum defaults. */
const clientFor = (checksums: "WHEN_REQUIRED" | "WHEN_SUPPORTED") =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    return yield* Effect.acquireRelease(
      Effect.sync(() =>
        new S3Client({
          endpoint: s3.endpoint,
          region: s3.region,
          forcePathStyle: true,
          credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
          requestChecksumCalculation: checksums,
          responseChecksumValidation: checksums,
          maxAttempts: 1,
          // the SDK's console line for failed streamed requests is expected here: keep it out of the output
          logger: { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined }
        })
      ),
      (c) => Effect.sync(() => c.destroy())
    )
  })

/** The SDK's error as `name status`, or "ok". */
const outcome = (p: Promise<unknown>) =>
  Effect.promise(() =>
    p.then(
      () => "ok",
      (e: { name?: string; $metadata?: { httpStatusCode?: number } }) => `${e.name} ${e.$metadata?.httpStatusCode}`
    )
  )

const requestsTo = (log: ReadonlyArray<ProxyRequestLog>, key: string) => log.filter((r) => r.path.split("?")[0]!.endsWith(`/${key}`))

describeRgw("against Ceph RGW: what it enforces", () => {
  beforeAll(async () => {
    await awaitRgw()
  }, 200_000)

  it.live("a body damaged in transit is refused by RGW itself (BadDigest from temp files and parts, XAmzContentSHA256Mismatch from memory); retried, stored right", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const inMemory = yield* insertObject({ bytes: randomBytes(700 * KiB, 1) }) // a single PUT from memory
      const streamed = yield* insertObject({ bytes: randomBytes(3 * MiB + 5, 2) }) // a single PUT streamed from its temp file
      const multipart = yield* insertObject({ bytes: randomBytes(12 * MiB + 3, 3) }) // 3 parts streamed from the temp file
      const others = []
      for (let i = 0; i < 10; i++) others.push(yield* insertObject({ bytes: randomBytes(10 * KiB + i, 10 + i) }))
      const bucketPath = (key: string) => new RegExp(`^/${s3.bucket}/${key}(\\?x-id=PutObject)?$`)
      yield* proxy.setRules([
        { name: "flip-memory", method: "PUT", path: bucketPath(inMemory.sha256!), count: 1, fault: { kind: "flipBody" } },
        { name: "flip-streamed", method: "PUT", path: bucketPath(streamed.sha256!), count: 1, fault: { kind: "flipBody" } },
        { name: "flip-part", method: "PUT", path: new RegExp(`^/${s3.bucket}/${multipart.sha256!}\\?.*partNumber=2`), count: 1, fault: { kind: "flipBody", offset: 12345 } }
      ])
      const tmp = yield* freshTempDir
      const result = yield* runCli([
        "migrate", ...(yield* targetVia(proxy.endpoint)), "--in-mem-max", "1024", "--upload-chunk-size", "5120", "--temp-dir", tmp
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      const log = yield* proxy.log
      const expected = [
        ["flip-memory", inMemory.sha256!, "XAmzContentSHA256Mismatch", /^[0-9a-f]{64}$/],
        ["flip-streamed", streamed.sha256!, "BadDigest", /^UNSIGNED-PAYLOAD$/],
        ["flip-part", multipart.sha256!, "BadDigest", /^UNSIGNED-PAYLOAD$/]
      ] as const
      for (const [name, key, code, payloadHash] of expected) {
        const flipped = log.filter((r) => r.fault === name)
        assert.lengthOf(flipped, 1, name)
        // RGW itself refused it: the proxy only changed the byte and relayed RGW's answer
        assert.strictEqual(flipped[0]!.status, 400, `${name}: RGW's answer`)
        assert.strictEqual(flipped[0]!.errorCode, code, name)
        assert.isDefined(flipped[0]!.headers["content-md5"], `${name} carried Content-MD5`)
        assert.match(String(flipped[0]!.headers["x-amz-content-sha256"]), payloadHash, name)
        const retried = requestsTo(log, key).filter((r) => r.method === "PUT" && r.fault === undefined && r.status === 200)
        assert.isAbove(retried.length, 0, `${name}: sent again and accepted`)
      }
      yield* assertAllMigrated([inMemory, streamed, multipart, ...others])
      yield* assertNoStrayKeys
      // the SDK's console line for a failed streamed request does not reach stderr at the default level
      assert.notInclude(result.stderr, sdkStreamingLine)
      assert.notInclude(result.stdout, sdkStreamingLine)
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("a body damaged on every attempt: the run fails after its retries, naming BadDigest and what it means; nothing marked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const victim = yield* insertObject({ bytes: randomBytes(2 * MiB, 20) })
      yield* insertObject({ bytes: randomBytes(1000, 21) })
      yield* proxy.setRules([{ name: "flip", method: "PUT", path: new RegExp(`/${victim.sha256!}(\\?x-id=PutObject)?$`), fault: { kind: "flipBody" } }])
      const result = yield* runCli(["migrate", ...(yield* targetVia(proxy.endpoint)), "--retries", "3"])
      assert.notStrictEqual(result.code, 0, result.stdout)
      assert.strictEqual(yield* proxy.fired("flip"), 3, "three attempts, each refused")
      assert.include(
        result.stderr,
        "BadDigest: the body the server received does not match its Content-MD5: it was damaged on the way (the server sent no message) [HTTP 400]"
      )
      assert.notInclude(result.stderr, "UnknownError")
      assert.notInclude(result.stderr, sdkStreamingLine)
      const rows = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      assert.isNull(rows.get(victim.hash) ?? null, "the refused object's row is not marked")
      assert.isTrue(Option.isNone(yield* s3.getObject(victim.sha256!)), "RGW stored nothing for it")
      yield* assertMarkedRowsBacked
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("RGW checks Content-MD5 (BadDigest) on PUTs and parts, and ignores x-amz-checksum-sha256", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const client = yield* clientFor("WHEN_REQUIRED")
      const body = Buffer.from("the bytes that were read")
      const other = Buffer.from("other bytes")
      const Bucket = s3.bucket
      assert.strictEqual(
        yield* outcome(client.send(new PutObjectCommand({ Bucket, Key: "md5", Body: body, ContentMD5: md5(other) }))),
        "BadDigest 400"
      )
      // a wrong SHA-256 checksum with the right MD5: accepted, and the bytes stored as sent
      assert.strictEqual(
        yield* outcome(client.send(new PutObjectCommand({ Bucket, Key: "sha", Body: body, ContentMD5: md5(body), ChecksumSHA256: sha256(other) }))),
        "ok",
        "RGW 16 ignores x-amz-checksum-sha256: if this fails, RGW enforces it now; update the table in docs/s3-servers.md"
      )
      assert.isTrue(Buffer.from(Option.getOrThrow(yield* s3.getObject("sha")).bytes).equals(body))
      const upload = yield* Effect.promise(() => client.send(new CreateMultipartUploadCommand({ Bucket, Key: "mp" })))
      const part = randomBytes(5 * MiB, 30)
      assert.strictEqual(
        yield* outcome(client.send(new UploadPartCommand({
          Bucket, Key: "mp", UploadId: upload.UploadId!, PartNumber: 1, Body: part, ContentMD5: md5(other)
        }))),
        "BadDigest 400"
      )
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the SDK's checksum defaults would break RGW (411 for streamed bodies); the tool streams temp files and parts with a Content-Length", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      const Bucket = s3.bucket
      const body = randomBytes(64 * KiB, 40)
      // the canary: what this test guards against, shown on this very server
      const defaults = yield* clientFor("WHEN_SUPPORTED")
      assert.strictEqual(
        yield* outcome(defaults.send(new PutObjectCommand({
          Bucket, Key: "chunked", Body: Readable.from([Buffer.from(body)]), ContentLength: body.length, ContentMD5: md5(body)
        }))),
        "MissingContentLength 411",
        "RGW 16 refuses aws-chunked streamed bodies; if this passes, the SDK or RGW changed"
      )

      // the tool: everything over 1 KiB goes through a temp file, so single PUTs and parts are streamed
      yield* createNice2Schema()
      const objects = []
      for (let i = 0; i < 6; i++) objects.push(yield* insertObject({ bytes: randomBytes(2 * KiB + i * 50 * KiB, 50 + i) }))
      objects.push(yield* insertObject({ bytes: randomBytes(11 * MiB + 1, 60) }))
      const tmp = yield* freshTempDir
      const result = yield* runCli([
        "migrate", ...(yield* targetVia(proxy.endpoint)), "--in-mem-max", "1", "--upload-chunk-size", "5120", "--temp-dir", tmp
      ])
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      const puts = (yield* proxy.log).filter((r) => r.method === "PUT" && !r.path.includes("/.lo-migrate-probe"))
      assert.isAtLeast(puts.filter((r) => r.path.includes("partNumber=")).length, 3, "parts were sent")
      for (const r of puts) {
        assert.isUndefined(r.headers["x-amz-trailer"], `${r.path}: no trailer`)
        assert.notInclude(String(r.headers["content-encoding"] ?? ""), "aws-chunked", r.path)
        // every body here is streamed from a file: unsigned, with its length (never STREAMING-…)
        assert.strictEqual(r.headers["x-amz-content-sha256"], "UNSIGNED-PAYLOAD", r.path)
        assert.isDefined(r.headers["content-length"], r.path)
        assert.isDefined(r.headers["content-md5"], r.path)
        assert.strictEqual(r.status, 200, r.path)
      }
    }).pipe(Effect.scoped, Effect.provide(env)))
})
