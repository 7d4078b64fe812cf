/**
 * `lo-migrate demo`: the whole tool on a machine with only Node and this package. Starts an embedded
 * PostgreSQL and an in-process S3 server, seeds a Nice2 table with objects of mixed sizes, migrates them
 * with the live progress display, re-reads every S3 object to prove its SHA-256 matches its row, prints
 * a summary and what to try next, and removes everything again (also on Ctrl-C).
 */
import { PgClient } from "@effect/sql-pg"
import { Console, Effect, Option, Redacted } from "effect"
import { Command, Flag } from "effect/cli"
import { SqlClient } from "effect/sql"
import { createHash, randomBytes } from "node:crypto"
import { VerificationFailed } from "../domain/DemoErrors.ts"
import { DatabaseError, RowsFailed, SettingsError } from "../domain/Errors.ts"
import { validate } from "../domain/Settings.ts"
import * as EmbeddedPostgres from "../embedded/EmbeddedPostgres.ts"
import * as S3Server from "../embedded/S3Server.ts"
import * as Migration from "../migrate/Migration.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import { writeStderr } from "../core/Output.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { loadSdk, makeClient } from "../s3/S3Store.ts"
import { progressFlags, progressRunOptions } from "./migrate.ts"

const KiB = 1024
const MiB = 1024 * KiB

const mimeTypes = ["application/pdf", "image/png", "image/jpeg", "text/plain", "application/octet-stream"] as const

/**
 * Mixed sizes, like a document store: mostly small files, some medium, a few over --in-mem-max (temp
 * files) and, from 200 objects on, two over the 5 MiB part size (multipart uploads).
 */
export const demoSizes = (count: number, random: () => number = Math.random): ReadonlyArray<number> =>
  Array.from({ length: count }, (_, i) => {
    if (count >= 200 && i < 2) return 5 * MiB + 1 + Math.floor(random() * MiB)
    const r = random()
    if (r < 0.75) return Math.floor(random() * 8 * KiB)
    if (r < 0.99) return 8 * KiB + Math.floor(random() * 56 * KiB)
    return 256 * KiB + Math.floor(random() * 1792 * KiB)
  })

const seed = (count: number, concurrency: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE _nice_binary (
      hash character(40) NOT NULL PRIMARY KEY,
      size bigint NOT NULL,
      mime_type varchar(255) NOT NULL,
      data oid
    )`
    yield* sql`CREATE TABLE nice_batch_job (id varchar(255) NOT NULL, active boolean NOT NULL)`
    yield* sql`INSERT INTO nice_batch_job (id, active) VALUES ('nice2.dms.DeleteUnreferencedBinariesBatchJob', false)`
    const sizes = demoSizes(count)
    yield* Effect.forEach(sizes, (size, i) => {
      const bytes = randomBytes(size)
      const hash = createHash("sha1").update(bytes).digest("hex")
      return sql`INSERT INTO _nice_binary (hash, size, mime_type, data)
        VALUES (${hash}, ${size}, ${mimeTypes[i % mimeTypes.length]!}, lo_from_bytea(0, ${bytes}))
        ON CONFLICT (hash) DO NOTHING`
    }, { concurrency, discard: true })
    return sizes
  }).pipe(Effect.mapError((cause) => new DatabaseError({ operation: "seed the demo table", cause })))

/** Every row's object, read back from S3: its SHA-256 must equal the row's sha2 and its length the row's size. */
const verify = (s3: S3Server.EmbeddedS3, concurrency: number) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ hash: string; size: bigint | number; sha2: string | null }>`
      SELECT hash, size, sha2 FROM _nice_binary`.pipe(
        Effect.mapError((cause) => new DatabaseError({ operation: "read the demo table", cause }))
      )
    const sdk = yield* loadSdk
    const client = yield* Effect.acquireRelease(
      Effect.sync(() =>
        makeClient(sdk, {
          endpoint: s3.endpoint,
          region: "us-east-1",
          bucket: s3.bucket,
          pathStyle: true,
          accessKey: Redacted.make(s3.accessKey),
          secretKey: Redacted.make(s3.secretKey),
          partSize: 5 * MiB,
          partConcurrency: 1,
          connections: concurrency,
          retry: defaultPolicy(1)
        })
      ),
      (c) => Effect.sync(() => c.destroy())
    )
    const mismatches: Array<string> = []
    yield* Effect.forEach(rows, (row) =>
      Effect.gen(function*() {
        if (row.sha2 === null) return mismatches.push(`${row.hash}: not migrated`)
        const got = yield* Effect.tryPromise(async (signal) => {
          const answer = await client.send(new sdk.GetObjectCommand({ Bucket: s3.bucket, Key: row.sha2! }), { abortSignal: signal })
          const bytes = await answer.Body!.transformToByteArray()
          return { length: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") }
        }).pipe(Effect.catch((e) => Effect.succeed({ length: -1, sha256: `unreadable (${String(e.cause)})` })))
        if (got.sha256 !== row.sha2 || got.length !== Number(row.size)) {
          mismatches.push(`${row.hash}: S3 has ${got.length} bytes with SHA-256 ${got.sha256}, the row says ${row.size} / ${row.sha2}`)
        }
      }), { concurrency, discard: true })
    if (mismatches.length > 0) return yield* new VerificationFailed({ mismatches, checked: rows.length })
    return rows.length
  })

const next = (progressMode: string) =>
  [
    "",
    "What to try next:",
    "  lo-migrate demo --progress json          the same run as JSON events on stdout (for scripts)",
    "  lo-migrate demo --metrics-port 9464      Prometheus metrics at http://127.0.0.1:9464/metrics during the run",
    "  lo-migrate migrate --help                every setting, with defaults and environment variables",
    "  npx lo-migrate migrate --pg-url postgresql://USER:PASS@HOST/DB --s3-url https://S3-ENDPOINT --bucket BUCKET",
    "                                           your own Nice2 database (resumable: stop and rerun at any time)",
    ...(progressMode === "tty" ? [] : ["  (on a terminal, the progress is a live display)"]),
    ""
  ].join("\n")

export const demo = Command.make("demo", {
  objects: Flag.Int("objects").pipe(
    Flag.withDescription("how many objects to seed [default: 2000; 500 on PGlite, which is slower]"),
    Flag.optional
  ),
  postgres: Flag.Literals("postgres", ["auto", "cluster", "pglite"] as const).pipe(
    Flag.withDescription(
      "embedded PostgreSQL: cluster (throwaway cluster from the PostgreSQL binaries), pglite (PostgreSQL in WASM, " +
        "optional package), auto (cluster when the binaries are found, else pglite) [default: auto]"
    ),
    Flag.withDefault("auto" as const)
  ),
  ...progressFlags
}, Effect.fn("demo")(function*(flags) {
  if (Option.isSome(flags.objects) && flags.objects.value < 1) {
    return yield* new SettingsError({ setting: "--objects", problem: `${flags.objects.value} is below the minimum of 1` })
  }
  const say = (text: string) => writeStderr(`${text}\n`)
  yield* Effect.scoped(Effect.gen(function*() {
    yield* say("lo-migrate demo: everything below runs on this machine and is removed at the end (also on Ctrl-C)")
    const pg = yield* EmbeddedPostgres.start(flags.postgres)
    yield* say(`  PostgreSQL: ${pg.description}`)
    const s3 = yield* S3Server.start("lo-migrate-demo")
    yield* say(`  S3:         s3rver at ${s3.endpoint}, bucket ${s3.bucket}, data in ${s3.directory}`)

    const objects = Option.getOrElse(flags.objects, () => (pg.kind === "pglite" ? 500 : 2000))
    const pool = PgClient.layer({ url: Redacted.make(pg.url), maxConnections: pg.maxConnections ?? 4 })
    const seededAt = Date.now()
    const sizes = yield* seed(objects, pg.maxConnections ?? 4).pipe(Effect.provide(pool))
    yield* say(
      `  seeded:     ${objects} large objects, ${formatBytes(sizes.reduce((a, b) => a + b, 0))} ` +
        `(largest ${formatBytes(sizes.reduce((a, b) => Math.max(a, b), 0))}) in ${((Date.now() - seededAt) / 1000).toFixed(1)} s`
    )
    yield* say("")

    const settings = yield* validate({
      pgUrl: pg.url,
      s3Url: s3.endpoint,
      bucket: s3.bucket,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      uploadChunkSize: 5 * 1024,
      // s3rver answers slowly per request: more uploads in flight keep it busy
      storerThreads: 12,
      interval: 2,
      ...(pg.maxConnections === 1 ? { receiverThreads: 1, committerThreads: 1 } : {})
    })
    const progress = progressRunOptions(flags, settings.interval)
    yield* pg.idle
    // PGlite's single connection cannot also hold the run lock; nobody else can reach this database anyway
    const summary = yield* Migration.run(settings, { ...progress.options, runLock: pg.maxConnections !== 1 }).pipe(
      Migration.provideTo(settings, { maxConnections: pg.maxConnections }),
      progress.around
    )
    if (summary.failed > 0) return yield* new RowsFailed({ failed: summary.failed })

    yield* pg.idle
    const verifiedAt = Date.now()
    const verified = yield* verify(s3, pg.maxConnections === 1 ? 4 : 8).pipe(Effect.provide(pool))
    const seconds = summary.durationMs / 1000
    if (progress.mode === "json") return
    yield* Console.log(
      `migrated ${summary.migrated} objects, ${(summary.bytes / MiB).toFixed(1)} MiB in ${seconds.toFixed(1)} s ` +
        `(${Math.round(summary.migrated / Math.max(seconds, 0.001))} objects/s, ${(summary.bytes / MiB / Math.max(seconds, 0.001)).toFixed(1)} MiB/s)`
    )
    yield* Console.log(
      `verified ${verified} objects: each one read back from S3 has the SHA-256 and size its row says ` +
        `(${((Date.now() - verifiedAt) / 1000).toFixed(1)} s)`
    )
    yield* Console.log(next(progress.mode))
  })).pipe(Effect.onInterrupt(() => say("\ninterrupted: embedded PostgreSQL and S3 stopped and removed")))
  yield* say("demo finished: embedded PostgreSQL and S3 stopped and removed")
})).pipe(Command.withDescription(
  "Try lo-migrate without a database or S3: embedded PostgreSQL + in-process S3, seeded, migrated, verified, removed"
))

