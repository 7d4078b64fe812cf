// What s3rver 3.7 (the stand-in of the fast tests) enforces, for the table of S3 servers in docs/s3-servers.md: none
// of the body checks. A wrong Content-MD5 and a wrong x-amz-checksum-sha256 are accepted, a multipart
// object's ETag is the plain MD5 of the whole object, and an aws-chunked body is stored with its
// framing; a body damaged in transit (a proxy flips a byte, headers kept: Content-MD5 and the signed
// payload hash no longer match) is stored as damaged. So on s3rver the tool's ETag comparison is the
// only proof of the bytes (S3Store.test.ts shows it catching damaged bytes); the same facts for Ceph
// RGW are in test/rgw/RgwIntegrity.test.ts.
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, S3Client, UploadPartCommand } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { Readable } from "node:stream"
import * as FaultProxy from "./support/FaultProxy.ts"
import { randomBytes } from "./support/Nice2Fixture.ts"
import { TestS3 } from "./support/S3.ts"

const md5 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("base64")
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("base64")

describe("s3rver 3.7 enforces no body check (docs/s3-servers.md)", () => {
  it.live("wrong Content-MD5 and x-amz-checksum-sha256 are stored; a multipart ETag is the whole MD5; aws-chunked framing and a body damaged in transit are stored", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      const Bucket = s3.bucket
      const body = Buffer.from("the bytes that were read")
      const other = Buffer.from("other bytes")
      yield* s3.use("PutObject", (c) => c.send(new PutObjectCommand({ Bucket, Key: "md5", Body: body, ContentMD5: md5(other) })))
      yield* s3.use("PutObject", (c) =>
        c.send(new PutObjectCommand({ Bucket, Key: "sha", Body: body, ContentMD5: md5(body), ChecksumSHA256: sha256(other) })))
      assert.isTrue(Buffer.from(Option.getOrThrow(yield* s3.getObject("md5")).bytes).equals(body))
      assert.isTrue(Buffer.from(Option.getOrThrow(yield* s3.getObject("sha")).bytes).equals(body))

      const up = yield* s3.use("CreateMultipartUpload", (c) => c.send(new CreateMultipartUploadCommand({ Bucket, Key: "mp" })))
      const part1 = randomBytes(5 * 1024 * 1024, 1)
      const part2 = randomBytes(1000, 2)
      const parts: Array<{ PartNumber: number; ETag: string }> = []
      for (const [i, part] of [part1, part2].entries()) {
        const answer = yield* s3.use("UploadPart", (c) =>
          c.send(new UploadPartCommand({ Bucket, Key: "mp", UploadId: up.UploadId!, PartNumber: i + 1, Body: part, ContentMD5: md5(part) })))
        parts.push({ PartNumber: i + 1, ETag: answer.ETag! })
      }
      const done = yield* s3.use("CompleteMultipartUpload", (c) =>
        c.send(new CompleteMultipartUploadCommand({ Bucket, Key: "mp", UploadId: up.UploadId!, MultipartUpload: { Parts: parts } })))
      assert.strictEqual(done.ETag?.replace(/"/g, ""), createHash("md5").update(Buffer.concat([part1, part2])).digest("hex"))

      const defaults = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new S3Client({
            endpoint: s3.endpoint,
            region: s3.region,
            forcePathStyle: true,
            credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey }
          })
        ),
        (c) => Effect.sync(() => c.destroy())
      )
      yield* Effect.promise(() =>
        defaults.send(new PutObjectCommand({ Bucket, Key: "chunked", Body: Readable.from([Buffer.from("hello world")]), ContentLength: 11 })))
      const stored = Buffer.from(Option.getOrThrow(yield* s3.getObject("chunked")).bytes).toString()
      assert.notStrictEqual(stored, "hello world")
      assert.include(stored, "x-amz-checksum-crc32")

      // damaged on the way: the signed SHA-256 of the body and its Content-MD5 are not checked either
      const proxy = yield* FaultProxy.make({ upstream: s3.endpoint, rules: [{ method: "PUT", fault: { kind: "flipBody", offset: 3 } }] })
      const viaProxy = yield* Effect.acquireRelease(
        Effect.sync(() =>
          new S3Client({
            endpoint: proxy.endpoint,
            region: s3.region,
            forcePathStyle: true,
            credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
            requestChecksumCalculation: "WHEN_REQUIRED",
            responseChecksumValidation: "WHEN_REQUIRED"
          })
        ),
        (c) => Effect.sync(() => c.destroy())
      )
      const answer = yield* Effect.promise(() =>
        viaProxy.send(new PutObjectCommand({ Bucket, Key: "flipped", Body: body, ContentMD5: md5(body) })))
      const [put] = yield* proxy.log
      assert.match(String(put!.headers["x-amz-content-sha256"]), /^[0-9a-f]{64}$/, "the body was signed")
      const damaged = Buffer.from(Option.getOrThrow(yield* s3.getObject("flipped")).bytes)
      assert.isFalse(damaged.equals(body))
      assert.strictEqual(damaged[3], body[3]! ^ 0x01)
      // the ETag shows it: the MD5 of the damaged bytes, not of the bytes sent
      assert.strictEqual(answer.ETag?.replace(/"/g, ""), createHash("md5").update(damaged).digest("hex"))
    }).pipe(Effect.scoped, Effect.provide(TestS3.layer)))
})
