/**
 * Flags shared by the commands: the connection flags (PostgreSQL, S3) that migrate, verify and prune
 * read alike, with the same environment fallbacks, and the options of the commands after the copy.
 */
import { Config } from "effect"
import { Flag } from "effect/cli"
import { cannedAcls, defaults, sseModes } from "../domain/Settings.ts"

/** A flag description with its default and environment fallback, since the help shows neither. */
export const described = (text: string, options: { readonly default?: unknown; readonly env?: string }) =>
  `${text}${options.default === undefined ? "" : ` [default: ${options.default}]`}${
    options.env === undefined ? "" : ` [env: ${options.env}]`
  }`

export const int = (name: string, text: string, fallback: number) =>
  Flag.Int(name).pipe(Flag.withDescription(described(text, { default: fallback })), Flag.withDefault(fallback))

/** An integer flag whose absence matters (a default computed from other flags may apply). */
export const optionalInt = (name: string, text: string, fallback: number) =>
  Flag.Int(name).pipe(Flag.withDescription(described(text, { default: fallback })), Flag.optional)

/** An integer flag with a default and an environment fallback. */
const intFromEnv = (name: string, text: string, fallback: number, env: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(described(text, { default: fallback, env })),
    Flag.withFallbackConfig(Config.Int(env)),
    Flag.withDefault(fallback)
  )

/** The flags every command that talks to PostgreSQL and S3 shares. */
export const connectionFlags = {
  pgUrl: Flag.Redacted("pg-url").pipe(
    Flag.withAlias("p"),
    Flag.withDescription(described(
      "PostgreSQL, as libpq takes it: postgresql://USER:PASS@HOST[:PORT]/DB[?sslmode=...] or 'host=H dbname=D ...'; " +
        "without it, the PG* variables (PGHOST, PGDATABASE, PGUSER, PGPASSWORD, ~/.pgpass; docs/connections.md)",
      { env: "LO_MIGRATE_PG_URL" }
    )),
    Flag.withFallbackConfig(Config.Redacted("LO_MIGRATE_PG_URL")),
    Flag.optional
  ),
  s3Url: Flag.String("s3-url").pipe(
    Flag.withAlias("u"),
    Flag.withDescription(described("S3 endpoint URL (Ceph RGW, MinIO, ...); omit for AWS S3", { env: "LO_MIGRATE_S3_URL" })),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_S3_URL")),
    Flag.optional
  ),
  accessKey: Flag.Redacted("access-key").pipe(
    Flag.withAlias("k"),
    Flag.withDescription(described("S3 access key", { env: "AWS_ACCESS_KEY_ID" })),
    Flag.withFallbackConfig(Config.Redacted("AWS_ACCESS_KEY_ID")),
    Flag.optional
  ),
  secretKey: Flag.Redacted("secret-key").pipe(
    Flag.withAlias("s"),
    Flag.withDescription(described("S3 secret key", { env: "AWS_SECRET_ACCESS_KEY" })),
    Flag.withFallbackConfig(Config.Redacted("AWS_SECRET_ACCESS_KEY")),
    Flag.optional
  ),
  bucket: Flag.String("bucket").pipe(
    Flag.withAlias("b"),
    Flag.withDescription(described("S3 bucket (must exist)", { env: "LO_MIGRATE_BUCKET" })),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_BUCKET"))
  ),
  region: Flag.String("region").pipe(
    Flag.withDescription(described("S3 region, used for request signing", { default: defaults.region, env: "AWS_REGION" })),
    Flag.withFallbackConfig(Config.String("AWS_REGION")),
    Flag.withDefault(defaults.region)
  ),
  pathStyle: Flag.Boolean("path-style").pipe(
    Flag.withDescription(
      "path-style URLs (http://host/bucket/key); --no-path-style for virtual-hosted style [default: on with --s3-url, off for AWS]"
    ),
    Flag.optional
  ),
  s3Timeout: intFromEnv(
    "s3-timeout",
    "seconds an S3 request may go without a byte either way (connecting: at most 10; a whole request: twice this plus 1 s per MiB); then it is aborted and retried",
    defaults.s3Timeout,
    "LO_MIGRATE_S3_TIMEOUT"
  ),
  pgTimeout: intFromEnv(
    "pg-timeout",
    "seconds a PostgreSQL statement may run (statement_timeout) and a session may owe an answer; then the session is dropped and the statement retried on a fresh one",
    defaults.pgTimeout,
    "LO_MIGRATE_PG_TIMEOUT"
  ),
  pgCa: Flag.File("pg-ca").pipe(
    Flag.withDescription(
      "PEM file of the CA that signs the PostgreSQL server's certificate: turns on TLS with certificate and host verification"
    ),
    Flag.optional
  )
}

/** An optional text flag with an environment fallback. */
const textFromEnv = (name: string, text: string, env: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(described(text, { env })),
    Flag.withFallbackConfig(Config.String(env)),
    Flag.optional
  )

/**
 * The S3 options of every object written, named as `aws s3 cp` names them: only the commands that write
 * objects (migrate, upload-blobs) take them; the probe object carries them too.
 */
export const s3WriteFlags = {
  storageClass: textFromEnv(
    "storage-class",
    "x-amz-storage-class of every object written, passed as given (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR, …) [default: the bucket's]",
    "LO_MIGRATE_STORAGE_CLASS"
  ),
  sse: textFromEnv(
    "sse",
    `server-side encryption of every object written: ${sseModes.join(" or ")} [default: the bucket's]`,
    "LO_MIGRATE_SSE"
  ),
  sseKmsKeyId: textFromEnv(
    "sse-kms-key-id",
    "the KMS key (id, ARN or alias) of --sse aws:kms; only valid with it [default: the bucket's default key, else aws/s3]",
    "LO_MIGRATE_SSE_KMS_KEY_ID"
  ),
  acl: textFromEnv(
    "acl",
    `canned ACL of every object written: ${cannedAcls.join(", ")} [default: none sent]`,
    "LO_MIGRATE_ACL"
  )
}

export const retries = int("retries", "attempts per S3 or PostgreSQL call before it counts as failed", defaults.retries)

export const concurrency = int("concurrency", "objects checked at once", 8)

export const interval = int("interval", "seconds between progress lines", 10).pipe(Flag.withAlias("i"))

/** `--count` / `--no-count`: `what` is counted first, for the progress's total. */
export const countFlag = (what: string) =>
  Flag.Boolean("count").pipe(
    Flag.withDescription(
      `${what} first, so that progress shows done of the total, a percentage and an ETA; ` +
        "--no-count starts at once and shows the total as ? [default: on]"
    ),
    Flag.withDefault(true)
  )

export const count = countFlag("count the rows to check (one count(*) and sum(size) over the same rows)")

export const deep = Flag.Boolean("deep").pipe(
  Flag.withDescription("download every object and compare the SHA-256 of its bytes (not only HEAD)"),
  Flag.withDefault(false)
)

export const againstSource = Flag.Boolean("against-source").pipe(
  Flag.withDescription("also re-read each large object and compare its SHA-256 (implies --deep)"),
  Flag.withDefault(false)
)
