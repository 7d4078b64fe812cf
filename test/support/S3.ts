// An in-process s3rver per layer build, with a fresh bucket and a correctly configured S3Client.
//
// s3rver is a stand-in for AWS S3 / Ceph RGW / MinIO: tests must not depend on its quirks.
// Known pitfalls (FIELD-NOTES §6, §13):
// - SDK checksum defaults ("WHEN_SUPPORTED") make s3rver store aws-chunked framing for streamed bodies:
//   silent corruption. The client below uses "WHEN_REQUIRED" for both directions.
// - ListObjectsV2 past 1000 keys makes s3rver answer 500 unless node runs with --openssl-legacy-provider
//   (its continuation token uses DES). vitest.config.ts passes that flag to the forked workers.
import {
  CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client
} from "@aws-sdk/client-s3"
import { Context, Data, Effect, Layer, Option } from "effect"
import { randomBytes } from "node:crypto"
import S3rver from "s3rver"
import { scopedTempDir } from "./TempDir.js"

export class TestS3Error extends Data.TaggedError("TestS3Error")<{
  readonly op: string
  readonly cause: unknown
  readonly message: string
}> {}

// The SDK's exception name (NoSuchBucket, SignatureDoesNotMatch, ...) is what a failing test needs to see.
const s3Error = (op: string, cause: unknown) => {
  const c = cause as { name?: unknown; message?: unknown } | null
  return new TestS3Error({ op, cause, message: `${op} failed: ${String(c?.name ?? "")} ${String(c?.message ?? cause)}` })
}

export interface StoredObject {
  readonly bytes: Uint8Array
  readonly contentType: string | undefined
  /** User metadata; s3rver (like S3) returns the keys lower-cased. */
  readonly metadata: Readonly<Record<string, string>>
  readonly contentLength: number | undefined
  readonly etag: string | undefined
}

export interface PutOptions {
  readonly bucket?: string
  readonly contentType?: string
  readonly metadata?: Readonly<Record<string, string>>
}

export interface TestS3Shape {
  /** http://127.0.0.1:<port> (path-style addressing required). */
  readonly endpoint: string
  /** A fresh bucket created for this layer build. */
  readonly bucket: string
  readonly accessKey: string
  readonly secretKey: string
  readonly region: string
  /** Configured as the tool must configure its own (path style, checksums WHEN_REQUIRED). */
  readonly client: S3Client
  /** Runs an SDK call; rejections become TestS3Error. */
  readonly use: <A>(op: string, f: (client: S3Client, signal: AbortSignal) => Promise<A>) => Effect.Effect<A, TestS3Error>
  /** The object, or None if the key does not exist. Defaults to `bucket`. */
  readonly getObject: (key: string, bucket?: string) => Effect.Effect<Option.Option<StoredObject>, TestS3Error>
  readonly putObject: (key: string, body: Uint8Array | string, options?: PutOptions) => Effect.Effect<void, TestS3Error>
  /** Every key (all pages of ListObjectsV2), in S3's order (lexicographic). Defaults to `bucket`. */
  readonly listKeys: (options?: { readonly bucket?: string; readonly prefix?: string }) => Effect.Effect<
    ReadonlyArray<string>,
    TestS3Error
  >
  /** Creates another bucket on the same server. */
  readonly createBucket: (name: string) => Effect.Effect<void, TestS3Error>
}

export const S3RVER_ACCESS_KEY = "S3RVER"
export const S3RVER_SECRET_KEY = "S3RVER"
export const REGION = "us-east-1"

/** A client for `endpoint` with the settings every S3 stand-in (and real S3) accepts. */
export const makeS3Client = (
  endpoint: string,
  credentials: { readonly accessKeyId: string; readonly secretAccessKey: string } = {
    accessKeyId: S3RVER_ACCESS_KEY,
    secretAccessKey: S3RVER_SECRET_KEY
  }
): S3Client =>
  new S3Client({
    endpoint,
    region: REGION,
    forcePathStyle: true, // http://host/bucket/key: s3rver, MinIO and RGW without wildcard DNS need it
    credentials: { ...credentials },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED"
  })

const isMissingKey = (cause: unknown): boolean => {
  const name = (cause as { name?: unknown } | null)?.name
  return name === "NoSuchKey" || name === "NotFound"
}

/** The TestS3 operations over `client`; `bucket` is created by the caller. */
export const testS3Of = (server: {
  readonly endpoint: string
  readonly bucket: string
  readonly accessKey: string
  readonly secretKey: string
  readonly region: string
  readonly client: S3Client
}): TestS3Shape => {
  const { client, bucket } = server
  const use = <A>(op: string, f: (client: S3Client, signal: AbortSignal) => Promise<A>) =>
    Effect.tryPromise({ try: (signal) => f(client, signal), catch: (cause) => s3Error(op, cause) })

  const createBucket = (name: string) =>
    use("CreateBucket", (c, abortSignal) => c.send(new CreateBucketCommand({ Bucket: name }), { abortSignal }))
      .pipe(Effect.asVoid)

  const getObject = (key: string, inBucket: string = bucket) =>
    Effect.tryPromise({
      try: async (abortSignal): Promise<Option.Option<StoredObject>> => {
        try {
          const r = await client.send(new GetObjectCommand({ Bucket: inBucket, Key: key }), { abortSignal })
          const bytes = r.Body === undefined ? new Uint8Array(0) : await r.Body.transformToByteArray()
          return Option.some({
            bytes,
            contentType: r.ContentType,
            metadata: r.Metadata ?? {},
            contentLength: r.ContentLength,
            etag: r.ETag
          })
        } catch (cause) {
          if (isMissingKey(cause)) return Option.none()
          throw cause
        }
      },
      catch: (cause) => s3Error("GetObject", cause)
    })

  const putObject = (key: string, body: Uint8Array | string, options: PutOptions = {}) =>
    use("PutObject", (c, abortSignal) =>
      c.send(
        new PutObjectCommand({
          Bucket: options.bucket ?? bucket,
          Key: key,
          Body: body,
          ...(options.contentType !== undefined ? { ContentType: options.contentType } : {}),
          ...(options.metadata !== undefined ? { Metadata: { ...options.metadata } } : {})
        }),
        { abortSignal }
      )).pipe(Effect.asVoid)

  const listKeys = (options: { readonly bucket?: string; readonly prefix?: string } = {}) =>
    use("ListObjectsV2", async (c, abortSignal) => {
      const keys: Array<string> = []
      let token: string | undefined
      do {
        const page = await c.send(
          new ListObjectsV2Command({
            Bucket: options.bucket ?? bucket,
            ...(options.prefix !== undefined ? { Prefix: options.prefix } : {}),
            ...(token !== undefined ? { ContinuationToken: token } : {})
          }),
          { abortSignal }
        )
        for (const o of page.Contents ?? []) if (o.Key !== undefined) keys.push(o.Key)
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      return keys as ReadonlyArray<string>
    })

  return {
    endpoint: server.endpoint,
    bucket,
    accessKey: server.accessKey,
    secretKey: server.secretKey,
    region: server.region,
    client,
    use,
    getObject,
    putObject,
    listKeys,
    createBucket
  }
}

/** S3 bucket names: 3-63 chars of [a-z0-9-], starting with a letter or digit. */
export const freshBucketName = () => `lo-migrate-test-${randomBytes(6).toString("hex")}`

export class TestS3 extends Context.Service<TestS3, TestS3Shape>()("test/TestS3") {
  /** s3rver on a random loopback port with its own temp dir and bucket; all removed when the scope closes. */
  static readonly layer: Layer.Layer<TestS3, TestS3Error> = Layer.effect(
    TestS3,
    Effect.gen(function*() {
      const directory = yield* scopedTempDir("s3rver-")
      const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory })
      const address = yield* Effect.acquireRelease(
        Effect.tryPromise({ try: () => server.run(), catch: (cause) => s3Error("s3rver.run", cause) }),
        () => Effect.promise(() => server.close())
      )
      const endpoint = `http://127.0.0.1:${address.port}`
      // Released before the server closes (finalizers run in reverse order).
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => makeS3Client(endpoint)),
        (c) => Effect.sync(() => c.destroy())
      )
      const s3 = testS3Of({
        endpoint,
        bucket: freshBucketName(),
        accessKey: S3RVER_ACCESS_KEY,
        secretKey: S3RVER_SECRET_KEY,
        region: REGION,
        client
      })
      yield* s3.createBucket(s3.bucket)
      return TestS3.of(s3)
    })
  )
}
