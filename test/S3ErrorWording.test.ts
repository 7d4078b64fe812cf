// An S3 error whose server gave no message (Ceph RGW leaves <Message> empty; a HEAD's error has no body)
// is named by its code and what the code means, never "UnknownError" (describeCause, S3ErrorCodes.ts).
import { HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { describeCause, StoreError } from "../src/domain/Errors.ts"
import { s3ErrorMeanings } from "../src/domain/S3ErrorCodes.ts"

const awsError = (name: string, message: string, status: number) =>
  Object.assign(new Error(message), { name, $metadata: { httpStatusCode: status } })

/** What the SDK makes of `status` with `body`, as RGW 16 answers (an empty <Message>). */
const sdkErrorFrom = async (status: number, body: string, send: (c: S3Client) => Promise<unknown>): Promise<unknown> => {
  const server = Http.createServer((req, res) => {
    req.resume()
    req.on("end", () => {
      res.writeHead(status, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) })
      res.end(body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const client = new S3Client({
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: "k", secretAccessKey: "s" },
    maxAttempts: 1
  })
  try {
    return await send(client).then(() => undefined, (e: unknown) => e)
  } finally {
    client.destroy()
    server.close()
  }
}

const rgwError = (code: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message></Message><BucketName>b</BucketName>` +
  `<RequestId>tx0000-rgw</RequestId><HostId>1-default</HostId></Error>`

describe("describeCause for S3 errors", () => {
  it("an error without a message is named by its code and meaning", () => {
    assert.strictEqual(
      describeCause(awsError("BadDigest", "UnknownError", 400)),
      "BadDigest: the body the server received does not match its Content-MD5: it was damaged on the way (the server sent no message) [HTTP 400]"
    )
    assert.strictEqual(
      describeCause(awsError("NotFound", "UnknownError", 404)),
      "NotFound: no such object or bucket (the server sent no message) [HTTP 404]"
    )
    assert.strictEqual(describeCause(awsError("SlowDown", "", 503)), "SlowDown: the server asks for fewer requests per second (the server sent no message) [HTTP 503]")
    assert.strictEqual(
      describeCause(awsError("WeirdVendorCode", "UnknownError", 400)),
      "WeirdVendorCode: an error code this tool does not know (the server sent no message) [HTTP 400]"
    )
    assert.strictEqual(describeCause(awsError("Unknown", "UnknownError", 503)), "the server is overloaded or down for now (the server sent no error code) [HTTP 503]")
    assert.strictEqual(describeCause(awsError("Unknown", "UnknownError", 418)), "an error answer (the server sent no error code) [HTTP 418]")
  })

  it("a server's own message is kept as it is", () => {
    assert.strictEqual(
      describeCause(awsError("BadDigest", "The Content-MD5 you specified did not match what we received.", 400)),
      "BadDigest: The Content-MD5 you specified did not match what we received. [HTTP 400]"
    )
  })

  it("errors that are not a server's answer are unchanged", () => {
    assert.strictEqual(describeCause(new Error("boom")), "boom")
    assert.strictEqual(describeCause(Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" })), "read ECONNRESET (ECONNRESET)")
    class TimeoutError extends Error {
      override readonly name = "TimeoutError"
    }
    assert.strictEqual(describeCause(new TimeoutError("no answer")), "TimeoutError: no answer")
    assert.strictEqual(describeCause("plain"), "plain")
  })

  it("every code in the table reads as words", () => {
    for (const [code, meaning] of Object.entries(s3ErrorMeanings)) {
      assert.match(code, /^[A-Z][A-Za-z0-9]+$/)
      assert.isAbove(meaning.length, 10, code)
      assert.notInclude(describeCause(awsError(code, "UnknownError", 400)), "UnknownError", code)
    }
  })

  it("the SDK's own error for an RGW answer with an empty <Message> (PUT, and a HEAD without a body)", async () => {
    const put = await sdkErrorFrom(400, rgwError("BadDigest"), (c) =>
      c.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: "x", ContentMD5: "AAAAAAAAAAAAAAAAAAAAAA==" })))
    assert.strictEqual((put as { message?: string }).message, "UnknownError", "what the SDK says by itself")
    const message = new StoreError({ operation: "PutObject", key: "k", cause: put }).message
    assert.strictEqual(
      message,
      "S3 PutObject k failed: BadDigest: the body the server received does not match its Content-MD5: it was damaged on the way (the server sent no message) [HTTP 400]"
    )
    const head = await sdkErrorFrom(403, "", (c) => c.send(new HeadObjectCommand({ Bucket: "b", Key: "k" })))
    assert.strictEqual((head as { name?: string }).name, "Unknown", "what the SDK says by itself")
    assert.strictEqual(
      describeCause(head),
      "access denied: the credentials or the bucket policy forbid it (the server sent no error code) [HTTP 403]"
    )
  })
})
