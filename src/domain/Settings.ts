/**
 * Every setting of a migration, in one place. The CLI flags (with their environment fallbacks) and the
 * library API both produce a `SettingsInput`; `validate` turns it into `Settings` or a `SettingsError`
 * that names the offending flag. Sizes are converted to bytes here, once.
 */
import { Effect, Redacted } from "effect"
import * as NodeFs from "node:fs"
import { tmpdir } from "node:os"
import * as ConnInfo from "./ConnInfo.ts"
import { SettingsError } from "./Errors.ts"
import * as Profile from "./Profile.ts"

const KiB = 1024
const MiB = 1024 * KiB

/**
 * The original's defaults, kept so that scripts written for it behave the same, except the storers:
 * 16 instead of 5, because the bench measured 20-40 % more small objects per second at the same CPU
 * (BENCHMARKS.md) and a real S3 endpoint, where every PUT waits for a network round trip, gains more.
 */
export const defaults = {
  receiverThreads: 2,
  storerThreads: 16,
  /**
   * the storers' ceiling when their number adapts (the default: no --storer-threads or --workers):
   * from 16 up to this while more storers raise the rate (pipeline/AdaptiveConcurrency.ts)
   */
  maxStorerThreads: 128,
  committerThreads: 2,
  receiverQueue: 8192,
  storerQueue: 1024,
  committerQueue: 8192,
  commitChunk: 100,
  /** KiB */
  inMemMax: 1024,
  /** KiB; S3 refuses parts under 5 MiB */
  uploadChunkSize: 20480,
  /** KiB per `lo_get` of a large object (see LargeObjects.readChunkSize) */
  readChunkSize: 2048,
  /** seconds */
  interval: 10,
  region: "us-east-1",
  /**
   * attempts per S3 / PostgreSQL call before the failure counts: 10 waits about 40 s in all (200 ms
   * doubling to a 10 s cap), so a server that restarts within that is ridden out (6 gave 6 s)
   */
  retries: 10,
  /** MiB of object bytes held in memory between receivers and storers (see MemoryBudget.ts) */
  memoryBudget: 256,
  /** seconds an S3 request may go without a byte either way (see S3Store.requestDeadline) */
  s3Timeout: 60,
  /** seconds a PostgreSQL statement may run, and a session may owe an answer (see PgSession.ts) */
  pgTimeout: 300
} as const

/**
 * `--workers N` scales the stages together: N storers and one receiver per 8 storers (rounded up), the
 * defaults' ratio (N = 16 gives the defaults): with small objects read many per statement, one receiver
 * outpaces many storers (BENCHMARKS.md). Explicit --receiver-threads / --storer-threads win.
 */
export const scaledThreads = (workers: number) => ({
  receiverThreads: Math.max(1, Math.ceil(workers / 8)),
  storerThreads: workers
})

/** Settings as given: numbers in the CLI's units (KiB, seconds), secrets redacted. */
export interface SettingsInput extends Profile.ProfileInput {
  /**
   * libpq's connection string: a postgresql:// URL or a keyword/value DSN; absent or blank, the PG*
   * variables alone (PGHOST, PGHOSTADDR or PGDATABASE must be set). See docs/connections.md.
   */
  readonly pgUrl?: Redacted.Redacted<string> | string | undefined
  readonly s3Url?: string | undefined
  readonly accessKey?: Redacted.Redacted<string> | string | undefined
  readonly secretKey?: Redacted.Redacted<string> | string | undefined
  readonly bucket: string
  readonly region?: string | undefined
  /** path-style URLs (http://host/bucket/key); default: on for a custom --s3-url, off for AWS */
  readonly pathStyle?: boolean | undefined
  readonly receiverThreads?: number | undefined
  readonly storerThreads?: number | undefined
  /** the adaptive storers' ceiling; with --storer-threads N, N is where they start */
  readonly maxStorerThreads?: number | undefined
  readonly committerThreads?: number | undefined
  readonly receiverQueue?: number | undefined
  readonly storerQueue?: number | undefined
  readonly committerQueue?: number | undefined
  readonly commitChunk?: number | undefined
  readonly inMemMax?: number | undefined
  readonly uploadChunkSize?: number | undefined
  readonly readChunkSize?: number | undefined
  readonly interval?: number | undefined
  readonly finalize?: boolean | undefined
  readonly tempDir?: string | undefined
  readonly retries?: number | undefined
  /** failed rows also go to this file, one JSON object per line */
  readonly failuresFile?: string | undefined
  /** PEM file of the CA(s) that sign the PostgreSQL server's certificate: TLS with verification */
  readonly pgCa?: string | undefined
  /** scales receivers and storers together (see `scaledThreads`) */
  readonly workers?: number | undefined
  /** MiB */
  readonly memoryBudget?: number | undefined
  /** seconds */
  readonly s3Timeout?: number | undefined
  /** seconds */
  readonly pgTimeout?: number | undefined
  /** `--storage-class`: x-amz-storage-class of every object written (STANDARD, STANDARD_IA, GLACIER_IR, …), as given */
  readonly storageClass?: string | undefined
  /** `--sse`: server-side encryption of every object written, `AES256` or `aws:kms` */
  readonly sse?: string | undefined
  /** `--sse-kms-key-id`: the KMS key of `sse: "aws:kms"` (without it, the bucket's or account's default key) */
  readonly sseKmsKeyId?: string | undefined
  /** `--acl`: a canned ACL for every object written (see `cannedAcls`) */
  readonly acl?: string | undefined
}

export interface Settings {
  /** the connection string as given ("" = the PG* variables alone), resolved when the pool is built */
  readonly pgUrl: Redacted.Redacted<string>
  readonly s3Url: string | undefined
  readonly accessKey: Redacted.Redacted<string> | undefined
  readonly secretKey: Redacted.Redacted<string> | undefined
  readonly bucket: string
  readonly region: string
  readonly pathStyle: boolean
  readonly receiverThreads: number
  /** storers at the start; with `maxStorerThreads` above it, their number adapts up to that */
  readonly storerThreads: number
  /** the most storers: equal to `storerThreads` when their number is pinned */
  readonly maxStorerThreads: number
  readonly committerThreads: number
  readonly receiverQueue: number
  readonly storerQueue: number
  readonly committerQueue: number
  readonly commitChunk: number
  /** bytes: objects up to this size are kept in memory, larger ones go to a temp file */
  readonly inMemMax: number
  /** bytes: the multipart part size; objects above it are uploaded in parts */
  readonly uploadChunkSize: number
  /** bytes read from a large object per statement */
  readonly readChunkSize: number
  /** seconds between monitor reports */
  readonly interval: number
  readonly finalize: boolean
  readonly tempDir: string
  readonly retries: number
  readonly failuresFile: string | undefined
  readonly pgCa: string | undefined
  /** bytes of in-memory payloads in flight at most */
  readonly memoryBudget: number
  /** seconds an S3 request may go without a byte either way; the other S3 bounds derive from it */
  readonly s3Timeout: number
  /** seconds a statement may run (server side) and a session may owe an answer (client side) */
  readonly pgTimeout: number
  /** S3 options of every object written (and of the probe object) */
  readonly s3Write: S3WriteOptions
  /** the source (`--profile` and its flags); default nice2 */
  readonly profile: Profile.Profile
  /** `--shard i/n`: this process's slice of the rows; undefined: all of them */
  readonly shard: Profile.Shard | undefined
}

/** The canned ACLs S3 accepts on an object (x-amz-acl), as `aws s3 cp --acl` lists them. */
export const cannedAcls = [
  "private",
  "public-read",
  "public-read-write",
  "authenticated-read",
  "aws-exec-read",
  "bucket-owner-read",
  "bucket-owner-full-control"
] as const

/** `--sse` values. */
export const sseModes = ["AES256", "aws:kms"] as const

/** What every object written carries: absent, the header is not sent (the bucket's defaults apply). */
export interface S3WriteOptions {
  readonly storageClass: string | undefined
  readonly sse: (typeof sseModes)[number] | undefined
  readonly sseKmsKeyId: string | undefined
  readonly acl: (typeof cannedAcls)[number] | undefined
}

/** The S3 write options given, as flags (`--storage-class GLACIER_IR --sse aws:kms`), or undefined. */
export const describeS3Write = (w: S3WriteOptions): string | undefined => {
  const given = [
    w.storageClass === undefined ? undefined : `--storage-class ${w.storageClass}`,
    w.sse === undefined ? undefined : `--sse ${w.sse}`,
    w.sseKmsKeyId === undefined ? undefined : `--sse-kms-key-id ${w.sseKmsKeyId}`,
    w.acl === undefined ? undefined : `--acl ${w.acl}`
  ].filter((x) => x !== undefined)
  return given.length === 0 ? undefined : given.join(" ")
}

const optionalText = (value: string | undefined) => value === undefined || value.trim() === "" ? undefined : value.trim()

/** `--storage-class`, `--sse`, `--sse-kms-key-id`, `--acl`, checked. */
export const validateS3Write = (input: Pick<SettingsInput, "storageClass" | "sse" | "sseKmsKeyId" | "acl">): Effect.Effect<S3WriteOptions, SettingsError> =>
  Effect.gen(function*() {
    const storageClass = optionalText(input.storageClass)
    // passed as given (servers add their own classes), but it goes into a header
    if (storageClass !== undefined && !/^[A-Za-z0-9_.-]+$/.test(storageClass)) {
      return yield* new SettingsError({ setting: "--storage-class", problem: `"${storageClass}" is not a storage class name (letters, digits, _ . -)` })
    }
    const sse = optionalText(input.sse)
    if (sse !== undefined && !(sseModes as ReadonlyArray<string>).includes(sse)) {
      return yield* new SettingsError({ setting: "--sse", problem: `"${sse}" is not one of ${sseModes.join(", ")}` })
    }
    const sseKmsKeyId = optionalText(input.sseKmsKeyId)
    if (sseKmsKeyId !== undefined && sse !== "aws:kms") {
      return yield* new SettingsError({ setting: "--sse-kms-key-id", problem: "is only valid with --sse aws:kms" })
    }
    if (sseKmsKeyId !== undefined && /[\r\n]/.test(sseKmsKeyId)) {
      return yield* new SettingsError({ setting: "--sse-kms-key-id", problem: "must be one line" })
    }
    const acl = optionalText(input.acl)
    if (acl !== undefined && !(cannedAcls as ReadonlyArray<string>).includes(acl)) {
      return yield* new SettingsError({ setting: "--acl", problem: `"${acl}" is not a canned ACL (${cannedAcls.join(", ")})` })
    }
    return {
      storageClass,
      sse: sse as S3WriteOptions["sse"],
      sseKmsKeyId,
      acl: acl as S3WriteOptions["acl"]
    }
  })

const redact = (v: Redacted.Redacted<string> | string | undefined) =>
  v === undefined ? undefined : Redacted.isRedacted(v) ? v : Redacted.make(v)

const integer = (flag: string, value: number | undefined, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  Effect.suspend(() => {
    const v = value ?? fallback
    if (!Number.isSafeInteger(v)) {
      return Effect.fail(new SettingsError({ setting: flag, problem: `${v} is not an integer` }))
    }
    if (v < min) {
      return Effect.fail(new SettingsError({ setting: flag, problem: `${v} is below the minimum of ${min}` }))
    }
    if (v > max) {
      return Effect.fail(new SettingsError({ setting: flag, problem: `${v} is above the maximum of ${max}` }))
    }
    return Effect.succeed(v)
  })

/** KiB: a `lo_get` answer must stay under the driver's 16 MiB message limit, with room to spare */
const maxReadChunk = 8 * 1024

const required = (flag: string, value: string | undefined) =>
  value === undefined || value.trim() === ""
    ? Effect.fail(new SettingsError({ setting: flag, problem: "is required" }))
    : Effect.succeed(value.trim())

const checkUrl = (flag: string, value: string, protocols: ReadonlyArray<string>) =>
  Effect.suspend(() => {
    let url: URL
    try {
      url = new URL(value)
    } catch {
      // never echo the value: a PostgreSQL URL carries the password
      return Effect.fail(new SettingsError({
        setting: flag,
        problem: "is not a valid URL",
        fix: `give it as ${protocols.map((p) => `${p}//host[:port]`).join(" or ")}`
      }))
    }
    if (!protocols.includes(url.protocol)) {
      return Effect.fail(
        new SettingsError({ setting: flag, problem: `must start with ${protocols.map((p) => `${p}//`).join(" or ")}` })
      )
    }
    return Effect.succeed(value)
  })

/** S3 bucket naming rules shared by AWS, Ceph RGW and MinIO (the strict, DNS-compatible subset). */
const isBucketName = (name: string) =>
  /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(name) && !/\.\./.test(name) && !/^\d+\.\d+\.\d+\.\d+$/.test(name)

const readableFile = (flag: string, path: string | undefined) =>
  Effect.suspend(() => {
    if (path === undefined) return Effect.succeed(undefined)
    try {
      NodeFs.accessSync(path, NodeFs.constants.R_OK)
      return Effect.succeed(path)
    } catch (e) {
      return Effect.fail(new SettingsError({ setting: flag, problem: `cannot read ${path}: ${(e as Error).message}` }))
    }
  })

export const validate = (input: SettingsInput): Effect.Effect<Settings, SettingsError> =>
  Effect.gen(function*() {
    const pgUrl = yield* validatePgUrl(input.pgUrl)
    const s3Url = input.s3Url === undefined || input.s3Url.trim() === "" ? undefined : input.s3Url.trim()
    if (s3Url !== undefined) yield* checkUrl("--s3-url", s3Url, ["http:", "https:"])
    const bucket = yield* required("--bucket", input.bucket)
    if (!isBucketName(bucket)) {
      return yield* new SettingsError({
        setting: "--bucket",
        problem: `"${bucket}" is not a valid bucket name (3-63 characters: lowercase letters, digits, dots, hyphens)`
      })
    }
    const accessKey = redact(input.accessKey)
    const secretKey = redact(input.secretKey)
    if ((accessKey === undefined) !== (secretKey === undefined)) {
      return yield* new SettingsError({
        setting: accessKey === undefined ? "--access-key" : "--secret-key",
        problem: "is required when the other S3 key is given"
      })
    }
    const { profile, shard } = yield* Profile.validate(input)
    const uploadChunkSize = yield* integer("--upload-chunk-size", input.uploadChunkSize, defaults.uploadChunkSize, 5 * 1024)
    if (uploadChunkSize * KiB > 5 * 1024 * MiB) {
      return yield* new SettingsError({ setting: "--upload-chunk-size", problem: "S3 parts are at most 5 GiB" })
    }
    const scaled = input.workers === undefined
      ? undefined
      : scaledThreads(yield* integer("--workers", input.workers, 1, 1))
    const startAt = yield* integer("--storer-threads", input.storerThreads ?? scaled?.storerThreads, defaults.storerThreads, 1)
    // pinned by --storer-threads or --workers alone; adaptive by default or with --max-storer-threads
    const pinned = (input.storerThreads !== undefined || scaled !== undefined) && input.maxStorerThreads === undefined
    const maxStorerThreads = pinned
      ? startAt
      : yield* integer("--max-storer-threads", input.maxStorerThreads, Math.max(defaults.maxStorerThreads, startAt), 1)
    if (maxStorerThreads < startAt && input.storerThreads !== undefined) {
      return yield* new SettingsError({
        setting: "--max-storer-threads",
        problem: `${maxStorerThreads} is below --storer-threads ${startAt} (where the adaptive storers start): raise it, or drop it to pin ${startAt}`
      })
    }
    // a ceiling given without a start (the default 16, or --workers' share) lowers the start to it
    const storerThreads = Math.min(startAt, maxStorerThreads)
    return {
      pgUrl,
      s3Url,
      accessKey,
      secretKey,
      bucket,
      region: input.region?.trim() || defaults.region,
      pathStyle: input.pathStyle ?? s3Url !== undefined,
      receiverThreads: yield* integer("--receiver-threads", input.receiverThreads ?? scaled?.receiverThreads, defaults.receiverThreads, 1),
      storerThreads,
      maxStorerThreads,
      committerThreads: yield* integer("--committer-threads", input.committerThreads, defaults.committerThreads, 1),
      receiverQueue: yield* integer("--receiver-queue", input.receiverQueue, defaults.receiverQueue, 1),
      storerQueue: yield* integer("--storer-queue", input.storerQueue, defaults.storerQueue, 1),
      committerQueue: yield* integer("--committer-queue", input.committerQueue, defaults.committerQueue, 1),
      commitChunk: yield* integer("--commit-chunk", input.commitChunk, defaults.commitChunk, 1),
      inMemMax: (yield* integer("--in-mem-max", input.inMemMax, defaults.inMemMax, 0)) * KiB,
      uploadChunkSize: uploadChunkSize * KiB,
      readChunkSize: (yield* integer("--read-chunk-size", input.readChunkSize, defaults.readChunkSize, 64, maxReadChunk)) * KiB,
      interval: yield* integer("--interval", input.interval, defaults.interval, 1),
      finalize: input.finalize ?? false,
      tempDir: input.tempDir ?? tmpdir(),
      retries: yield* integer("--retries", input.retries, defaults.retries, 1),
      failuresFile: input.failuresFile?.trim() || undefined,
      pgCa: yield* readableFile("--pg-ca", input.pgCa?.trim() || undefined),
      memoryBudget: (yield* integer("--memory-budget", input.memoryBudget, defaults.memoryBudget, 1)) * MiB,
      s3Timeout: yield* integer("--s3-timeout", input.s3Timeout, defaults.s3Timeout, 1, 3600),
      pgTimeout: yield* integer("--pg-timeout", input.pgTimeout, defaults.pgTimeout, 1, 86400),
      s3Write: yield* validateS3Write(input),
      profile,
      shard
    }
  })

/**
 * A PostgreSQL setting by libpq's rules (docs/connections.md): a URL in any form libpq accepts or a
 * keyword/value DSN, checked with the PG* variables of `env` as defaults; absent or blank, the variables
 * alone, when they say where to connect. The value is never echoed (it may carry a password).
 */
export const validateConnectionString = (
  setting: string,
  value: Redacted.Redacted<string> | string | undefined,
  env: ConnInfo.Env = process.env,
  fallback = ""
): Effect.Effect<Redacted.Redacted<string>, SettingsError> =>
  Effect.suspend(() => {
    const given = redact(value)
    const text = given === undefined ? "" : Redacted.value(given).trim()
    if (text === "" && !ConnInfo.enoughInEnv(env)) {
      return Effect.fail(
        new SettingsError({
          setting,
          problem: `is required: a postgresql:// URL or a key=value DSN${fallback}, or ` +
            `${ConnInfo.enoughVariables.join(", ")} with the other PG* variables (docs/connections.md)`
        })
      )
    }
    try {
      ConnInfo.validate(text, env)
    } catch (e) {
      return Effect.fail(
        new SettingsError({ setting, problem: e instanceof ConnInfo.ConnInfoError ? e.problem : String(e) })
      )
    }
    return Effect.succeed(given === undefined || text === "" ? Redacted.make("") : given)
  })

/** `--pg-url` (or LO_MIGRATE_PG_URL, or the PG* variables), for every command. */
export const validatePgUrl = (
  value: Redacted.Redacted<string> | string | undefined,
  env: ConnInfo.Env = process.env
): Effect.Effect<Redacted.Redacted<string>, SettingsError> =>
  validateConnectionString("--pg-url", value, env, " (--pg-url or LO_MIGRATE_PG_URL)")

/** `--pg-ca` alone (plan): a file that can be read, or nothing. */
export const validatePgCa = (path: string | undefined): Effect.Effect<string | undefined, SettingsError> =>
  readableFile("--pg-ca", path?.trim() || undefined)
