/**
 * The S3 object store: plain S3 requests that AWS, Ceph RGW and MinIO all accept.
 *
 * Integrity end to end: every request body carries Content-MD5 (the whole object on a single PUT, each
 * part of a multipart upload), and single PUTs also carry x-amz-checksum-sha256, so the server rejects a
 * body that differs from what was read and hashed. The SDK's own checksum features are limited to
 * WHEN_REQUIRED: with its defaults, streamed bodies go out aws-chunked, which some servers store verbatim.
 * The SDK's retries are off; retries are ours (Retry.ts), so they are counted and capped in one place.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand
} from "@aws-sdk/client-s3"
import { Effect, Layer, Option, Redacted } from "effect"
import { createHash, randomBytes } from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"
import type { Readable } from "node:stream"
import { describeCause, StoreError, StoreUnavailable } from "../domain/Errors.ts"
import { retrying, type RetryPolicy } from "../pipeline/Retry.ts"
import { Stats } from "../pipeline/Stats.ts"
import { ObjectStore, type PutRequest } from "./ObjectStore.ts"

export interface S3StoreOptions {
  readonly endpoint: string | undefined
  readonly region: string
  readonly bucket: string
  readonly pathStyle: boolean
  readonly accessKey: Redacted.Redacted<string> | undefined
  readonly secretKey: Redacted.Redacted<string> | undefined
  /** objects larger than this are uploaded in parts of this size */
  readonly partSize: number
  /** parts of one object in flight at once */
  readonly partConcurrency: number
  /** concurrent requests expected (sizes the connection pool) */
  readonly connections: number
  readonly retry: RetryPolicy
}

const transientNames = new Set([
  "SlowDown",
  "RequestTimeout",
  "RequestTimeoutException",
  "InternalError",
  "ServiceUnavailable",
  "TooManyRequests",
  "Throttling",
  "ThrottlingException",
  "BadDigest",
  "XAmzContentSHA256Mismatch",
  "TimeoutError",
  "NetworkingError"
])
const transientCodes = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET"
])

interface AwsLikeError {
  readonly name?: string
  readonly code?: string
  readonly message?: string
  readonly $metadata?: { readonly httpStatusCode?: number }
  readonly cause?: unknown
}

/** Worth retrying: throttling, server errors, timeouts, broken connections, a body damaged in transit. */
export const isTransient = (error: unknown): boolean => {
  const e = (error ?? {}) as AwsLikeError
  const status = e.$metadata?.httpStatusCode
  if (status !== undefined && (status === 429 || status >= 500)) return true
  if (e.name !== undefined && transientNames.has(e.name)) return true
  if (e.code !== undefined && transientCodes.has(e.code)) return true
  if (typeof e.message === "string" && /socket hang up|ECONNRESET|premature close|aborted/i.test(e.message)) return true
  return e.cause !== undefined && e.cause !== error ? isTransient(e.cause) : false
}

const md5Base64 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("base64")
const hexToBase64 = (hex: string) => Buffer.from(hex, "hex").toString("base64")
const unquote = (etag: string | undefined) => etag?.replace(/^"|"$/g, "")

/** The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, a dash, the part count. */
export const multipartEtag = (partMd5s: ReadonlyArray<string>): string => {
  const joined = Buffer.concat(partMd5s.map((b64) => Buffer.from(b64, "base64")))
  return `${createHash("md5").update(joined).digest("hex")}-${partMd5s.length}`
}

export const makeClient = (options: S3StoreOptions): S3Client => {
  const agentOptions = { keepAlive: true, maxSockets: Math.max(8, options.connections) }
  return new S3Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.pathStyle,
    ...(options.accessKey === undefined || options.secretKey === undefined ? {} : {
      credentials: {
        accessKeyId: Redacted.value(options.accessKey),
        secretAccessKey: Redacted.value(options.secretKey)
      }
    }),
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
    requestHandler: {
      httpAgent: new Http.Agent(agentOptions),
      httpsAgent: new Https.Agent(agentOptions),
      connectionTimeout: 10_000,
      requestTimeout: 120_000
    }
  })
}

/** Why the probe failed, in words an operator can act on. */
const probeProblem = (error: unknown, endpoint: string): string => {
  const e = (error ?? {}) as AwsLikeError
  switch (e.name) {
    case "NoSuchBucket":
      return "does not exist (lo-migrate never creates buckets: create it first)"
    case "InvalidAccessKeyId":
    case "SignatureDoesNotMatch":
    case "InvalidToken":
    case "ExpiredToken":
      return `credentials rejected by ${endpoint} (${e.name}): check --access-key and --secret-key`
    case "AccessDenied":
    case "AllAccessDisabled":
      return `refuses writes (${e.name}): the credentials need s3:PutObject and s3:DeleteObject on the bucket`
  }
  if (e.$metadata?.httpStatusCode === 404) return "does not exist (lo-migrate never creates buckets: create it first)"
  if (e.$metadata?.httpStatusCode === 403) return `access denied by ${endpoint}: check the credentials and bucket policy`
  return `cannot use ${endpoint}: ${describeCause(error)}`
}

export const layer = (options: S3StoreOptions): Layer.Layer<ObjectStore, never, Stats> =>
  Layer.effect(
    ObjectStore,
    Effect.gen(function*() {
      const stats = yield* Stats
      const client = yield* Effect.acquireRelease(Effect.sync(() => makeClient(options)), (c) => Effect.sync(() => c.destroy()))
      const Bucket = options.bucket
      const endpoint = options.endpoint ?? `AWS S3 (${options.region})`

      const send = <A>(operation: string, key: string, f: (signal: AbortSignal) => Promise<A>, policy = options.retry) =>
        retrying(Effect.tryPromise({ try: f, catch: (cause) => cause }), {
          policy,
          isRetryable: isTransient,
          what: `S3 ${operation} ${key}`
        }).pipe(
          Effect.provideService(Stats, stats),
          Effect.mapError((cause) => new StoreError({ operation, key, cause }))
        )

      const putSingle = (request: PutRequest) =>
        Effect.gen(function*() {
          const size = request.payload.size
          const stream = request.payload.stream
          // a temp-file payload is streamed (a fresh stream per attempt), not loaded into memory
          const body = stream !== undefined
            ? () => stream(0, size)
            : yield* request.payload.read(0, size).pipe(
              Effect.map((bytes) => () => bytes),
              Effect.mapError((cause) => new StoreError({ operation: "PutObject", key: request.key, cause }))
            )
          yield* send("PutObject", request.key, (abortSignal) =>
            client.send(
              new PutObjectCommand({
                Bucket,
                Key: request.key,
                Body: body(),
                ContentLength: size,
                ContentType: request.contentType,
                ContentMD5: request.md5,
                ChecksumSHA256: hexToBase64(request.sha256),
                Metadata: { ...request.metadata }
              }),
              { abortSignal }
            ))
        })

      const putMultipart = (request: PutRequest) =>
        Effect.gen(function*() {
          const Key = request.key
          const created = yield* send("CreateMultipartUpload", Key, (abortSignal) =>
            client.send(
              new CreateMultipartUploadCommand({
                Bucket,
                Key,
                ContentType: request.contentType,
                Metadata: { ...request.metadata }
              }),
              { abortSignal }
            ))
          const UploadId = created.UploadId
          if (UploadId === undefined) {
            return yield* new StoreError({ operation: "CreateMultipartUpload", key: Key, cause: "no UploadId in the answer" })
          }
          const abort = send("AbortMultipartUpload", Key, (abortSignal) =>
            client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }), { abortSignal })).pipe(
              Effect.catch((error) => Effect.logWarning(`could not abort the multipart upload of ${Key}: ${error.message}`))
            )

          const size = request.payload.size
          const count = Math.ceil(size / options.partSize)
          const parts = yield* Effect.forEach(
            Array.from({ length: count }, (_, i) => i),
            (i) =>
              Effect.gen(function*() {
                const offset = i * options.partSize
                const length = Math.min(options.partSize, size - offset)
                const stream = request.payload.stream
                // A temp-file payload's part is streamed twice from the file (page cache): once for its
                // MD5, once as the body; so no part is ever held in memory. In-memory payloads are sliced.
                const toStoreError = (cause: unknown) => new StoreError({ operation: "UploadPart", key: Key, cause })
                const prepared: Effect.Effect<{ readonly body: () => Readable | Uint8Array; readonly ContentMD5: string }, StoreError> =
                  stream !== undefined
                    ? Effect.tryPromise({
                      try: async () => {
                        const md5 = createHash("md5")
                        for await (const chunk of stream(offset, length)) md5.update(chunk as Buffer)
                        return { body: () => stream(offset, length), ContentMD5: md5.digest("base64") }
                      },
                      catch: toStoreError
                    })
                    : request.payload.read(offset, length).pipe(
                      Effect.map((bytes) => ({ body: () => bytes, ContentMD5: md5Base64(bytes) })),
                      Effect.mapError(toStoreError)
                    )
                const { body, ContentMD5 } = yield* prepared
                const answer = yield* send("UploadPart", `${Key} part ${i + 1}/${count}`, (abortSignal) =>
                  client.send(
                    new UploadPartCommand({
                      Bucket,
                      Key,
                      UploadId,
                      PartNumber: i + 1,
                      Body: body(),
                      ContentLength: length,
                      ContentMD5
                    }),
                    { abortSignal }
                  ))
                return { PartNumber: i + 1, ETag: answer.ETag, md5: ContentMD5 }
              }),
            { concurrency: options.partConcurrency }
          ).pipe(Effect.onError(() => abort))

          const expectedEtag = multipartEtag(parts.map((p) => p.md5))
          yield* send("CompleteMultipartUpload", Key, (abortSignal) =>
            client.send(
              new CompleteMultipartUploadCommand({
                Bucket,
                Key,
                UploadId,
                MultipartUpload: { Parts: parts.map(({ ETag, PartNumber }) => ({ ETag, PartNumber })) }
              }),
              { abortSignal }
            )).pipe(
              // A retried Complete whose first attempt did succeed finds the upload gone: the object
              // counts as stored only if it is the one we assembled (same multipart ETag).
              Effect.catch((error) =>
                (error.cause as AwsLikeError | undefined)?.name === "NoSuchUpload"
                  ? send("HeadObject", Key, (abortSignal) =>
                    client.send(new HeadObjectCommand({ Bucket, Key }), { abortSignal })).pipe(
                      Effect.flatMap((head) =>
                        unquote(head.ETag) === expectedEtag && head.ContentLength === size
                          ? Effect.void
                          : Effect.fail(error)
                      )
                    )
                  : Effect.fail(error).pipe(Effect.tap(() => abort))
              ),
              Effect.onInterrupt(() => abort)
            )
        })

      return ObjectStore.of({
        target: `s3://${Bucket}`,
        probe: Effect.gen(function*() {
          const Key = `.lo-migrate-probe/${randomBytes(8).toString("hex")}`
          const Body = Buffer.from("lo-migrate write probe\n")
          const quick = { ...options.retry, attempts: Math.min(options.retry.attempts, 3) }
          yield* send("PutObject", Key, (abortSignal) =>
            client.send(
              new PutObjectCommand({ Bucket, Key, Body, ContentLength: Body.length, ContentMD5: md5Base64(Body) }),
              { abortSignal }
            ), quick)
          yield* send("DeleteObject", Key, (abortSignal) =>
            client.send(new DeleteObjectCommand({ Bucket, Key }), { abortSignal }), quick)
        }).pipe(Effect.mapError((error) => new StoreUnavailable({ bucket: Bucket, problem: probeProblem(error.cause, endpoint) }))),
        put: Effect.fn("S3Store.put")(function*(request: PutRequest) {
          yield* request.payload.size > options.partSize ? putMultipart(request) : putSingle(request)
        }),
        head: (key) =>
          send("HeadObject", key, (abortSignal) => client.send(new HeadObjectCommand({ Bucket, Key: key }), { abortSignal })).pipe(
            Effect.map((head) =>
              Option.some({
                size: head.ContentLength ?? 0,
                contentType: head.ContentType,
                metadata: head.Metadata ?? {}
              })
            ),
            Effect.catch((error) =>
              (error.cause as AwsLikeError | undefined)?.$metadata?.httpStatusCode === 404
                ? Effect.succeed(Option.none())
                : Effect.fail(error)
            )
          )
      })
    })
  )
