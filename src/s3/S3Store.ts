/**
 * The S3 object store: plain S3 requests that AWS, Ceph RGW and MinIO all accept.
 *
 * Integrity end to end: every request body carries Content-MD5 (the whole object on a single PUT, each
 * part of a multipart upload), single PUTs also carry x-amz-checksum-sha256, and a body sent from
 * memory is signed with its SHA-256 (x-amz-content-sha256; bodies streamed from temp files are
 * UNSIGNED-PAYLOAD). What the server enforces differs (docs/s3-servers.md): AWS S3 documents all
 * three; Ceph RGW 16 checks Content-MD5 (BadDigest) and the signed payload hash
 * (XAmzContentSHA256Mismatch) but ignores x-amz-checksum-sha256; s3rver 3.7 checks none of them. So
 * the proof that holds on every server is the ETag comparison below (a plain ETag must be the MD5 of
 * the bytes sent, a multipart one the MD5 of the parts' MD5s), confirmed by a HEAD when the answer
 * proves nothing; where the server checks Content-MD5, damaged bytes are not even stored.
 * The SDK's own checksum features are limited to WHEN_REQUIRED: with its defaults, streamed bodies
 * (temp files, parts) go out aws-chunked with a trailer, which RGW 16 refuses (411
 * MissingContentLength) and s3rver stores verbatim.
 * The SDK's retries are off; retries are ours (Retry.ts), so they are counted and capped in one place.
 * The SDK's own log lines go through the tool's logger (`sdkLogger`), never straight to the console.
 */
import type * as Sdk from "@aws-sdk/client-s3"
import type { ObjectCannedACL, S3Client, S3ClientConfig, ServerSideEncryption, StorageClass } from "@aws-sdk/client-s3"
import { Context, Effect, Layer, LogLevel, Option, Redacted, References, Stream } from "effect"
import { AsyncLocalStorage } from "node:async_hooks"
import { createHash } from "node:crypto"
import * as Http from "node:http"
import * as Https from "node:https"
import type { Readable } from "node:stream"
import { describeCause, StoreError, StoreUnavailable } from "../domain/Errors.ts"
import { describeS3Write, type S3WriteOptions } from "../domain/Settings.ts"
import { retrying, type RetryPolicy } from "../core/Retry.ts"
import { Stats } from "../core/Stats.ts"
import * as AdaptiveLimit from "./AdaptiveLimit.ts"
import type { Payload } from "../core/Payload.ts"
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
  /**
   * `--s3-timeout`, in ms: the longest a request may go without a byte either way (which bounds the
   * wait for the first byte of an answer too); connecting gets at most 10 s of it, and a whole request
   * `requestDeadline` (twice this, plus a second per MiB of body). Default 60 s.
   */
  readonly timeoutMs?: number | undefined
  /**
   * `--storage-class`, `--sse`, `--sse-kms-key-id`, `--acl`: sent with every PutObject and
   * CreateMultipartUpload, the probe's too, so a server that refuses a value fails the pre-flight.
   */
  readonly write?: S3WriteOptions | undefined
  /** how the messages name the settings of bucket, endpoint and keys; default lo-migrate's flags */
  readonly settingNames?: StoreSettingNames | undefined
}

/** The request fields of `write`: only those given (an absent one leaves the bucket's default). */
export const writeFields = (write: S3WriteOptions | undefined) => ({
  ...(write?.storageClass === undefined ? {} : { StorageClass: write.storageClass as StorageClass }),
  ...(write?.sse === undefined ? {} : { ServerSideEncryption: write.sse as ServerSideEncryption }),
  ...(write?.sseKmsKeyId === undefined ? {} : { SSEKMSKeyId: write.sseKmsKeyId }),
  ...(write?.acl === undefined ? {} : { ACL: write.acl as ObjectCannedACL })
})

/** `--s3-timeout`'s default, in seconds. */
export const defaultTimeoutSeconds = 60

/** The floor rate a request body is given: at 1 MiB/s a request never counts as stalled. */
const floorBytesPerMs = (1024 * 1024) / 1000

/**
 * How long one request may take in all: twice the idle bound, plus the time its body needs at 1 MiB/s
 * (a 20 MiB part gets 140 s with the default). The SDK's own socket timeout only sees silence; this
 * also ends an answer that trickles in a byte at a time.
 */
export const requestDeadline = (timeoutMs: number, bodyBytes: number): number =>
  2 * timeoutMs + Math.ceil(bodyBytes / floorBytesPerMs)

/** A request that did not finish within its deadline: aborted, and retried like any broken connection. */
class RequestDeadline extends Error {
  override readonly name = "TimeoutError"
}

/**
 * The server answered success, but the object is not there as sent (no object, another size, an ETag
 * that shows other bytes): the request is done again, as after any transient failure. A
 * CompleteMultipartUpload may answer 200 with an error in its body, which the SDK does not always see.
 */
class NotConfirmed extends Error {
  override readonly name = "NotConfirmed"
}

/** The temp file no longer holds what was read: sending it again cannot help, the row must be read again (a rerun). */
class TempFileChanged extends Error {
  override readonly name = "TempFileChanged"
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
  "NetworkingError",
  "ETagMismatch",
  "NotConfirmed"
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

/** The object put and deleted by the pre-flight write probe. */
export const probeKey = ".lo-migrate-probe"

const md5Base64 = (bytes: Uint8Array) => createHash("md5").update(bytes).digest("base64")
const hexToBase64 = (hex: string) => Buffer.from(hex, "hex").toString("base64")
const unquote = (etag: string | undefined) => etag?.replace(/^"|"$/g, "")

/** MD5 (base64) and SHA-256 (hex) of a payload's bytes, streamed from its temp file or read from memory. */
const payloadDigests = async (payload: Payload): Promise<{ readonly md5: string; readonly sha256: string }> => {
  const md5 = createHash("md5")
  const sha256 = createHash("sha256")
  if (payload.stream !== undefined) {
    for await (const chunk of payload.stream(0, payload.size)) {
      md5.update(chunk as Buffer)
      sha256.update(chunk as Buffer)
    }
  } else {
    const bytes: Uint8Array = await Effect.runPromise(payload.read(0, payload.size))
    md5.update(bytes)
    sha256.update(bytes)
  }
  return { md5: md5.digest("base64"), sha256: sha256.digest("hex") }
}

/** The ETag S3 gives a multipart object: MD5 of the parts' binary MD5s, a dash, the part count. */
export const multipartEtag = (partMd5s: ReadonlyArray<string>): string => {
  const joined = Buffer.concat(partMd5s.map((b64) => Buffer.from(b64, "base64")))
  return `${createHash("md5").update(joined).digest("hex")}-${partMd5s.length}`
}

/**
 * Whether the ETag the server answered confirms the bytes: a plain ETag is the MD5 of the object, a
 * multipart one (`…-N`) the MD5 of the parts' MD5s. With SSE-KMS or SSE-C the ETag is no MD5 at all,
 * and Content-MD5 (checked by the server) is the only proof: "unknown".
 */
export const etagVerdict = (
  answer: { readonly ETag?: string | undefined; readonly ServerSideEncryption?: string | undefined; readonly SSECustomerAlgorithm?: string | undefined },
  expected: { readonly md5?: string | undefined; readonly partMd5s?: ReadonlyArray<string> | undefined }
): "match" | "mismatch" | "unknown" => {
  const etag = unquote(answer.ETag)?.toLowerCase()
  if (etag === undefined || answer.SSECustomerAlgorithm !== undefined || answer.ServerSideEncryption?.startsWith("aws:kms")) {
    return "unknown"
  }
  if (/^[0-9a-f]{32}-\d+$/.test(etag)) {
    return expected.partMd5s === undefined ? "unknown" : etag === multipartEtag(expected.partMd5s) ? "match" : "mismatch"
  }
  if (/^[0-9a-f]{32}$/.test(etag)) {
    // an object read in parts has no whole MD5 to compare: the HEAD's sha256 metadata must prove it
    if (expected.md5 === undefined) return "unknown"
    return etag === Buffer.from(expected.md5, "base64").toString("hex") ? "match" : "mismatch"
  }
  return "unknown"
}

class ETagMismatch extends Error {
  override readonly name = "ETagMismatch"
}

/** Fails (transiently) when the server's ETag shows it stored other bytes than were sent. */
const rejectMismatch = (
  key: string,
  answer: Parameters<typeof etagVerdict>[0],
  expected: Parameters<typeof etagVerdict>[1]
): "match" | "unknown" => {
  const verdict = etagVerdict(answer, expected)
  if (verdict === "mismatch") throw new ETagMismatch(`the server stored ${key} with ETag ${answer.ETag}, not the MD5 of the bytes read`)
  return verdict
}

/** The SDK's logger interface (debug, info, warn, error, trace). */
export type SdkLogger = NonNullable<S3ClientConfig["logger"]>

/** One SDK log call as a line: strings as they are, errors by `describeCause`, the logger middleware's records summarized. */
const renderSdkLog = (content: ReadonlyArray<unknown>): string =>
  content.map((item) => {
    if (typeof item === "string") return item
    if (item instanceof Error) return describeCause(item)
    if (typeof item === "object" && item !== null && "commandName" in item) {
      // the logger middleware's record: never its input or output (bodies, metadata), just what happened
      const r = item as { readonly commandName?: unknown; readonly error?: unknown; readonly metadata?: { readonly httpStatusCode?: unknown } }
      const command = String(r.commandName).replace(/Command$/, "")
      return r.error !== undefined
        ? `${command} failed: ${describeCause(r.error)}`
        : `${command} answered HTTP ${String(r.metadata?.httpStatusCode ?? "?")}`
    }
    return describeCause(item)
  }).join(" ")

/**
 * The SDK's logger, routed into the tool's logs under `context` (its loggers and `--log-level`): the SDK's
 * warnings and errors at Debug, the rest at Trace. They are diagnostics: the tool itself logs every
 * retry (Debug) and reports every failure that matters in its own words, and without this the SDK
 * writes some lines (`An error was encountered in a non-retryable streaming request.`, once per failed
 * streamed upload) to the console whatever the level. A level that is off costs next to nothing: its
 * calls return at once, and `info` (the logger middleware's record of every request, built before the
 * call) is absent, which the SDK skips without building the record. The other methods stay functions:
 * some SDK code calls them without checking.
 */
export const sdkLogger = (context: Context.Context<never>): SdkLogger => {
  const minimum = Context.get(context, References.MinimumLogLevel)
  const enabled = (level: "Debug" | "Trace") => LogLevel.isGreaterThanOrEqualTo(level, minimum)
  const at = (level: "Debug" | "Trace") =>
    enabled(level)
      ? (...content: Array<unknown>) => {
        try {
          Effect.runSyncWith(context)(Effect.logWithLevel(level)(`AWS SDK: ${renderSdkLog(content)}`))
        } catch {
          // logging must never break a request
        }
      }
      : () => undefined
  const logger = { trace: at("Trace"), debug: at("Trace"), info: at("Trace"), warn: at("Debug"), error: at("Debug") }
  // `logger?.info?.(…)`: absent, the SDK builds no record at all
  return (enabled("Trace") ? logger : { ...logger, info: undefined }) as unknown as SdkLogger
}

/**
 * The SDK resolves a command's whole middleware stack on every `send` unless `cacheMiddleware` is on,
 * and it uses the cache only for calls without options, so an `abortSignal` option would turn it off
 * again. Here a `send` with only an abort signal passes the signal beside the call instead (an
 * AsyncLocalStorage the request handler reads), and the cached stack serves it: a third less CPU per
 * small PUT (BENCHMARKS.md). Every other call is the SDK's own.
 */
const cachedSends = (client: S3Client): S3Client => {
  const signals = new AsyncLocalStorage<AbortSignal>()
  type Handle = (request: unknown, options?: { readonly abortSignal?: AbortSignal | undefined }) => Promise<unknown>
  const handler = client.config.requestHandler as unknown as { handle: Handle }
  const handle = handler.handle.bind(handler)
  handler.handle = (request, handlerOptions) => {
    const signal = signals.getStore()
    return handle(request, signal === undefined ? handlerOptions : { ...handlerOptions, abortSignal: signal })
  }
  const send = client.send.bind(client) as (command: unknown, options?: unknown) => Promise<unknown>
  client.send = ((command: unknown, sendOptions?: unknown) => {
    const abortSignal = (sendOptions as { readonly abortSignal?: AbortSignal } | undefined)?.abortSignal
    const onlySignal = typeof sendOptions === "object" && sendOptions !== null && abortSignal !== undefined &&
      Object.keys(sendOptions).length === 1
    return onlySignal ? signals.run(abortSignal, () => send(command)) : send(command, sendOptions)
  }) as S3Client["send"]
  return client
}

/** The AWS SDK's S3 module. */
export type S3Sdk = typeof Sdk

/**
 * The SDK is loaded when a store is made, not when the executable starts: it costs about 130 ms and
 * 30 MiB, which a zodb-convert run with inline blobs, `--help` and `plan` never need.
 */
export const loadSdk: Effect.Effect<S3Sdk> = Effect.promise(() => import("@aws-sdk/client-s3"))

export const makeClient = (sdk: S3Sdk, options: S3StoreOptions, logger?: SdkLogger): S3Client => {
  const agentOptions = { keepAlive: true, maxSockets: Math.max(8, options.connections) }
  const timeoutMs = options.timeoutMs ?? defaultTimeoutSeconds * 1000
  return cachedSends(new sdk.S3Client({
    cacheMiddleware: true,
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    forcePathStyle: options.pathStyle,
    ...(options.accessKey === undefined || options.secretKey === undefined ? {} : {
      credentials: {
        accessKeyId: Redacted.value(options.accessKey),
        secretAccessKey: Redacted.value(options.secretKey)
      }
    }),
    // the SDK's defaults (WHEN_SUPPORTED) send streamed bodies aws-chunked: RGW 16 answers 411
    // MissingContentLength, s3rver stores the framing (test/rgw/RgwIntegrity.test.ts, S3Compat.test.ts)
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 1,
    ...(logger === undefined ? {} : { logger }),
    requestHandler: {
      ...(logger === undefined ? {} : { logger }),
      httpAgent: new Http.Agent(agentOptions),
      httpsAgent: new Https.Agent(agentOptions),
      // both end the request with a TimeoutError (retried); the SDK's requestTimeout would only warn,
      // so the whole-request bound is ours (requestDeadline, in `send`)
      connectionTimeout: Math.min(10_000, timeoutMs),
      socketTimeout: timeoutMs
    }
  }))
}

/** How the settings that point at the store are named in messages: lo-migrate's flags by default. */
export interface StoreSettingNames {
  readonly bucket: string
  readonly endpoint: string
  readonly keys: string
}

export const flagNames: StoreSettingNames = {
  bucket: "--bucket",
  endpoint: "--s3-url",
  keys: "--access-key and --secret-key (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
}

interface Diagnosis {
  readonly problem: string
  readonly fix: string | undefined
}

const grantsNeeded = "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:AbortMultipartUpload on the bucket (docs/access.md)"

/** Why the probe failed, and what to change, in words an operator can act on. */
const probeProblem = (error: unknown, endpoint: string, bucket: string, names: StoreSettingNames, custom: boolean): Diagnosis => {
  const e = (error ?? {}) as AwsLikeError
  const missing = {
    problem: "does not exist (this tool never creates buckets)",
    fix: `create it first (e.g. aws s3 mb s3://${bucket}${custom ? ` --endpoint-url ${endpoint}` : ""}), or correct ${names.bucket}`
  }
  switch (e.name) {
    case "NoSuchBucket":
      return missing
    case "InvalidAccessKeyId":
    case "SignatureDoesNotMatch":
    case "InvalidToken":
    case "ExpiredToken":
      return { problem: `credentials rejected by ${endpoint} (${e.name})`, fix: `check ${names.keys}` }
    case "AccessDenied":
    case "AllAccessDisabled":
      return { problem: `refuses writes (${e.name})`, fix: `grant the credentials ${grantsNeeded}` }
  }
  if (e.$metadata?.httpStatusCode === 404) return missing
  if (e.$metadata?.httpStatusCode === 403) {
    return { problem: `access denied by ${endpoint}`, fix: `check ${names.keys} and the bucket policy: they need ${grantsNeeded}` }
  }
  const text = describeCause(error)
  const fix = /certificate|self.signed|CERT_/i.test(text)
    ? `for a server whose certificate a private CA signs, start with NODE_EXTRA_CA_CERTS=/path/to/ca.pem (docs/access.md); or check ${names.endpoint}`
    : /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ETIMEDOUT|EAI_AGAIN|TimeoutError|socket hang up/i.test(text)
    ? `check ${names.endpoint} (scheme, host, port): an S3 server must answer there`
    : undefined
  return { problem: `cannot use ${endpoint}: ${text}`, fix }
}

/** Why the read-only check failed: as for the probe, but about reading. */
const readProblem = (error: unknown, endpoint: string, bucket: string, names: StoreSettingNames, custom: boolean): Diagnosis => {
  const e = (error ?? {}) as AwsLikeError
  return e.name === "AccessDenied" || e.name === "AllAccessDisabled"
    ? { problem: `refuses reads (${e.name})`, fix: "grant the credentials s3:ListBucket and s3:GetObject on the bucket" }
    : probeProblem(error, endpoint, bucket, names, custom)
}

export const layer = (options: S3StoreOptions): Layer.Layer<ObjectStore, never, Stats> =>
  Layer.effect(
    ObjectStore,
    Effect.gen(function*() {
      const stats = yield* Stats
      const logger = sdkLogger(yield* Effect.context<never>())
      const sdk = yield* loadSdk
      const client = yield* Effect.acquireRelease(Effect.sync(() => makeClient(sdk, options, logger)), (c) => Effect.sync(() => c.destroy()))
      const Bucket = options.bucket
      const endpoint = options.endpoint ?? `AWS S3 (${options.region})`
      const written = writeFields(options.write)
      const writeFlags = options.write === undefined ? undefined : describeS3Write(options.write)
      /** A 400 to the probe's PUT while object options are set: the server refuses one of them (InvalidStorageClass, InvalidArgument, …). */
      const refusedOptions = (error: unknown): Diagnosis | undefined => {
        const e = (error ?? {}) as AwsLikeError
        return writeFlags !== undefined && e.$metadata?.httpStatusCode === 400
          ? {
            problem: `${endpoint} refuses an object written with ${writeFlags}: ${describeCause(error)}`,
            fix: `leave out or change ${writeFlags} to what this server accepts (docs/s3-servers.md)`
          }
          : undefined
      }
      const names = options.settingNames ?? flagNames

      // one permit per request on the wire; SlowDown halves the permits, successes win them back
      const limit = yield* AdaptiveLimit.make({
        max: options.connections,
        onChange: (n, reason) =>
          reason === "slow-down"
            ? Effect.logWarning(`S3 asked to slow down: at most ${n} request(s) in flight from now on`)
            : Effect.logDebug(`S3 request limit raised to ${n}`)
      })

      const timeoutMs = options.timeoutMs ?? defaultTimeoutSeconds * 1000
      /**
       * One request, retried when it fails transiently; `bodyBytes` (what the request sends, or what the
       * server must assemble) sets its deadline. Interrupting the attempt aborts the request.
       */
      const send = <A>(operation: string, key: string, f: (signal: AbortSignal) => Promise<A>, policy = options.retry, bodyBytes = 0) =>
        retrying(limit.withPermit(Effect.tryPromise({ try: f, catch: (cause) => cause }).pipe(
          Effect.timeoutOrElse({
            duration: requestDeadline(timeoutMs, bodyBytes),
            orElse: () =>
              Effect.fail(new RequestDeadline(`no complete answer within ${requestDeadline(timeoutMs, bodyBytes) / 1000} s (--s3-timeout ${timeoutMs / 1000})`))
          })
        )).pipe(
          Effect.tapError((cause) => (AdaptiveLimit.isSlowDown(cause) ? limit.slowDown : Effect.void))
        ), {
          policy,
          isRetryable: isTransient,
          what: `S3 ${operation} ${key}`
        }).pipe(
          Effect.provideService(Stats, stats),
          Effect.mapError((cause) => new StoreError({ operation, key, cause }))
        )

      /**
       * Proof that S3 holds the object as sent, for answers that do not prove it themselves: it exists,
       * has the size, and an ETag of the object's (or its parts') MD5 form agrees. Throws NotConfirmed
       * (retried) otherwise; a failing HEAD is a failed attempt like any other.
       */
      const confirmStored = async (
        key: string,
        size: number,
        expected: Parameters<typeof etagVerdict>[1] & { readonly sha256: string },
        abortSignal: AbortSignal,
        /** the object's bytes as sent (a multipart upload read in parts has no whole MD5 to compare) */
        payload?: Payload | undefined
      ): Promise<void> => {
        const head = await client.send(new sdk.HeadObjectCommand({ Bucket, Key: key }), { abortSignal }).catch((error: unknown) => {
          if ((error as AwsLikeError).$metadata?.httpStatusCode === 404) {
            throw new NotConfirmed(`the server answered success, but has no object ${key}`)
          }
          throw error
        })
        if (head.ContentLength !== size) {
          throw new NotConfirmed(`the server answered success, but ${key} has ${head.ContentLength} bytes, not ${size}`)
        }
        // A server that gives a multipart object the plain MD5 of the whole (s3rver) and checks no
        // Content-MD5: hash what was sent once, so that both its SHA-256 (the bytes read) and the
        // server's MD5 (the bytes stored) prove it
        let whole = expected
        if (expected.md5 === undefined && payload !== undefined && /^"?[0-9a-f]{32}"?$/i.test(head.ETag ?? "")) {
          const sent = await payloadDigests(payload)
          if (sent.sha256 !== expected.sha256) {
            throw new TempFileChanged(`the temp file of ${key} no longer holds the bytes that were read (SHA-256 ${sent.sha256}): the row stays unmarked, a rerun reads it again`)
          }
          whole = { ...expected, md5: sent.md5 }
        }
        const verdict = etagVerdict(head, whole)
        if (verdict === "mismatch") {
          throw new NotConfirmed(`the server answered success, but ${key} has ETag ${head.ETag}, not that of the bytes sent`)
        }
        // where the ETag proves nothing (SSE-KMS, another form), the sha256 metadata sent with the object
        // must be there: an older object of the same size under a reused key is not this one
        if (verdict === "unknown" && head.Metadata?.sha256 !== expected.sha256) {
          throw new NotConfirmed(`the server answered success, but ${key} does not carry this object's sha256 metadata`)
        }
      }

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
          // read in parts for a larger part size than this store's: the whole MD5 is computed here
          const md5 = request.md5 ?? (yield* Effect.tryPromise({
            try: async () => {
              const hash = createHash("md5")
              if (stream === undefined) return hash.update(body() as Uint8Array).digest("base64")
              for await (const chunk of stream(0, size)) hash.update(chunk as Buffer)
              return hash.digest("base64")
            },
            catch: (cause) => new StoreError({ operation: "PutObject", key: request.key, cause })
          }))
          yield* send("PutObject", request.key, (abortSignal) =>
            client.send(
              new sdk.PutObjectCommand({
                Bucket,
                Key: request.key,
                Body: body(),
                ContentLength: size,
                ContentType: request.contentType,
                ContentMD5: md5,
                ChecksumSHA256: hexToBase64(request.sha256),
                Metadata: { ...request.metadata },
                ...written
              }),
              { abortSignal }
            ).then((answer) =>
              // an ETag that is the MD5 proves the bytes; an answer without one (or an SSE-KMS ETag) is
              // checked by a HEAD before the row may be marked
              rejectMismatch(request.key, answer, { md5 }) === "match"
                ? undefined
                : confirmStored(request.key, size, { md5, sha256: request.sha256 }, abortSignal)
            ), options.retry, size)
        })

      const putMultipart = (request: PutRequest) =>
        Effect.gen(function*() {
          const Key = request.key
          const created = yield* send("CreateMultipartUpload", Key, (abortSignal) =>
            client.send(
              new sdk.CreateMultipartUploadCommand({
                Bucket,
                Key,
                ContentType: request.contentType,
                Metadata: { ...request.metadata },
                ...written
              }),
              { abortSignal }
            ))
          const UploadId = created.UploadId
          if (UploadId === undefined) {
            return yield* new StoreError({ operation: "CreateMultipartUpload", key: Key, cause: "no UploadId in the answer" })
          }
          // best effort, and never a reason to keep a failing run alive: two attempts (a lifecycle rule
          // removes what is left)
          const abort = send("AbortMultipartUpload", Key, (abortSignal) =>
            client.send(new sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId }), { abortSignal }), {
            ...options.retry,
            attempts: Math.min(options.retry.attempts, 2)
          }).pipe(
              Effect.catch((error) => Effect.logWarning(`could not abort the multipart upload of ${Key}: ${error.message}`))
            )

          const size = request.payload.size
          const count = Math.ceil(size / options.partSize)
          // the parts' MD5s from the read, when it cut the same parts: each part is then streamed once
          const known = request.partMd5s !== undefined && request.partMd5s.partSize === options.partSize &&
              request.partMd5s.md5s.length === count
            ? request.partMd5s.md5s
            : undefined
          const parts = yield* Effect.forEach(
            Array.from({ length: count }, (_, i) => i),
            (i) =>
              Effect.gen(function*() {
                const offset = i * options.partSize
                const length = Math.min(options.partSize, size - offset)
                const stream = request.payload.stream
                // A temp-file payload's part is streamed from the file, never held in memory: once as the
                // body when the read gave its MD5, else first once for its MD5. In-memory payloads are sliced.
                const toStoreError = (cause: unknown) => new StoreError({ operation: "UploadPart", key: Key, cause })
                const prepared: Effect.Effect<{ readonly body: () => Readable | Uint8Array; readonly ContentMD5: string }, StoreError> =
                  known !== undefined && stream !== undefined
                    ? Effect.succeed({ body: () => stream(offset, length), ContentMD5: known[i]! })
                    : stream !== undefined
                    ? Effect.tryPromise({
                      try: async () => {
                        const md5 = createHash("md5")
                        for await (const chunk of stream(offset, length)) md5.update(chunk as Buffer)
                        return { body: () => stream(offset, length), ContentMD5: md5.digest("base64") }
                      },
                      catch: toStoreError
                    })
                    : request.payload.read(offset, length).pipe(
                      Effect.map((bytes) => ({ body: () => bytes, ContentMD5: known?.[i] ?? md5Base64(bytes) })),
                      Effect.mapError(toStoreError)
                    )
                const { body, ContentMD5 } = yield* prepared
                const answer = yield* send("UploadPart", `${Key} part ${i + 1}/${count}`, (abortSignal) =>
                  client.send(
                    new sdk.UploadPartCommand({
                      Bucket,
                      Key,
                      UploadId,
                      PartNumber: i + 1,
                      Body: body(),
                      ContentLength: length,
                      ContentMD5
                    }),
                    { abortSignal }
                  ), options.retry, length)
                return { PartNumber: i + 1, ETag: answer.ETag, md5: ContentMD5 }
              }),
            { concurrency: options.partConcurrency }
          ).pipe(Effect.onError(() => abort))

          yield* send("CompleteMultipartUpload", Key, (abortSignal) =>
            client.send(
              new sdk.CompleteMultipartUploadCommand({
                Bucket,
                Key,
                UploadId,
                MultipartUpload: { Parts: parts.map(({ ETag, PartNumber }) => ({ ETag, PartNumber })) }
              }),
              { abortSignal }
            ).then((answer) => {
              // every completion is confirmed by a HEAD: a 200 can carry an error in its body, and an
              // answer without an ETag proves nothing
              const expected = { md5: request.md5, partMd5s: parts.map((p) => p.md5), sha256: request.sha256 }
              rejectMismatch(Key, answer, expected)
              return confirmStored(Key, size, expected, abortSignal, request.payload)
            }), options.retry, size).pipe(
              // A Complete that failed for the client may have succeeded on the server (its answer lost
              // after the object was assembled): a retried Complete then finds the upload gone, and some
              // servers answer it with an error. Whatever the error, the object counts as stored only if
              // it is the one we assembled (same size, ETag confirming the bytes); otherwise the upload
              // is aborted and the original error stands. (With SSE-KMS the ETag proves nothing: the sha256 metadata then must.)
              Effect.catch((error) =>
                // the same proof as after a Complete that answered (size, ETag, or the sha256 metadata)
                send("HeadObject", Key, (abortSignal) =>
                  confirmStored(Key, size, { md5: request.md5, partMd5s: parts.map((p) => p.md5), sha256: request.sha256 }, abortSignal, request.payload), {
                  ...options.retry,
                  attempts: Math.min(options.retry.attempts, 2)
                }).pipe(
                  // the proof's own verdict on a changed temp file says more than the Complete's error
                  Effect.catch((proof) =>
                    Effect.fail((proof.cause as { readonly name?: string } | undefined)?.name === "TempFileChanged" ? proof : error)
                  ),
                  Effect.tapError(() => abort)
                )
              ),
              Effect.onInterrupt(() => abort)
            )
        })

      return ObjectStore.of({
        target: `s3://${Bucket}`,
        probe: Effect.gen(function*() {
          // A fixed key: a probe left behind by a killed run is overwritten and deleted by the next one,
          // so the bucket never keeps a key that no row names (runs on a table are serialized by the lock).
          const Key = probeKey
          const Body = Buffer.from("lo-migrate write probe\n")
          const quick = { ...options.retry, attempts: Math.min(options.retry.attempts, 3) }
          yield* send("PutObject", Key, (abortSignal) =>
            client.send(
              new sdk.PutObjectCommand({ Bucket, Key, Body, ContentLength: Body.length, ContentMD5: md5Base64(Body), ...written }),
              { abortSignal }
            ), quick)
          // every multipart completion (and any answer without a proving ETag) is confirmed by a HEAD:
          // credentials that may write but not read would fail the first such object, so find out now
          yield* send("HeadObject", Key, (abortSignal) => client.send(new sdk.HeadObjectCommand({ Bucket, Key }), { abortSignal }), quick).pipe(
            // 404: another run's probe (shards start together, the key is shared) deleted it first; being
            // told so is being allowed to look. Only a refusal (403) is a problem
            Effect.catchIf(
              (error) => (error.cause as AwsLikeError | undefined)?.$metadata?.httpStatusCode === 404,
              () => Effect.void
            ),
            Effect.mapError((error) =>
              new StoreError({
                operation: "HeadObject",
                key: Key,
                cause: { name: "CannotReadBack", message: `cannot HEAD what it wrote (${describeCause(error.cause)}): the credentials need s3:GetObject too, which lo-migrate uses to confirm uploads` }
              })
            )
          )
          yield* send("DeleteObject", Key, (abortSignal) =>
            client.send(new sdk.DeleteObjectCommand({ Bucket, Key }), { abortSignal }), quick)
        }).pipe(Effect.mapError((error) =>
          new StoreUnavailable({
            bucket: Bucket,
            ...((error.cause as AwsLikeError | undefined)?.name === "CannotReadBack"
              ? { problem: (error.cause as AwsLikeError).message!, fix: "grant the credentials s3:GetObject on the bucket" }
              : (error.operation === "PutObject" ? refusedOptions(error.cause) : undefined) ??
                probeProblem(error.cause, endpoint, Bucket, names, options.endpoint !== undefined))
          })
        )),
        checkRead: send("ListObjectsV2", "(one key)", (abortSignal) =>
          client.send(new sdk.ListObjectsV2Command({ Bucket, MaxKeys: 1 }), { abortSignal }), {
          ...options.retry,
          attempts: Math.min(options.retry.attempts, 3)
        }).pipe(
          Effect.asVoid,
          Effect.mapError((error) =>
            new StoreUnavailable({ bucket: Bucket, ...readProblem(error.cause, endpoint, Bucket, names, options.endpoint !== undefined) })
          )
        ),
        put: Effect.fn("S3Store.put")(function*(request: PutRequest) {
          yield* request.payload.size > options.partSize ? putMultipart(request) : putSingle(request)
        }),
        head: (key) =>
          send("HeadObject", key, (abortSignal) => client.send(new sdk.HeadObjectCommand({ Bucket, Key: key }), { abortSignal })).pipe(
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
          ),
        get: <E, R>(key: string, onChunk: (chunk: Uint8Array) => Effect.Effect<void, E, R>) =>
          send("GetObject", key, (abortSignal) => client.send(new sdk.GetObjectCommand({ Bucket, Key: key }), { abortSignal })).pipe(
            Effect.map(Option.some),
            Effect.catch((error) => {
              const cause = error.cause as AwsLikeError | undefined
              return cause?.$metadata?.httpStatusCode === 404 || cause?.name === "NoSuchKey"
                ? Effect.succeed(Option.none())
                : Effect.fail(error)
            }),
            Effect.flatMap((answer) => {
              if (Option.isNone(answer)) return Effect.succeed(Option.none<number>())
              const body = answer.value.Body as AsyncIterable<Uint8Array> | undefined
              if (body === undefined) return Effect.succeed(Option.some(0))
              let length = 0
              return Stream.fromAsyncIterable(body, (cause) => new StoreError({ operation: "GetObject", key, cause })).pipe(
                Stream.runForEach((chunk) => {
                  length += chunk.length
                  return onChunk(chunk)
                }),
                Effect.map(() => Option.some(length))
              )
            })
          )
      })
    })
  )
