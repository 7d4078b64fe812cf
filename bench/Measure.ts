/**
 * The measurements: the raw limits of the servers with the same driver and SDK settings, the naive
 * one-at-a-time baseline, and lo-migrate end to end as a child process.
 */
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import { readChunkSize } from "../src/postgres/LargeObjects.ts"
import type { Payload } from "../src/core/Payload.ts"
import { ObjectStore } from "../src/s3/ObjectStore.ts"
import * as S3Store from "../src/s3/S3Store.ts"
import { type Listed, withPg } from "./Dataset.ts"

export const MiB = 1024 * 1024
const ACCESS = "S3RVER"
const SECRET = "S3RVER"
/** lo-migrate's read chunk, used by the raw read of large objects too */
/** lo-migrate's own `lo_get` chunk, so the raw read and the naive loop read as it does */
const CHUNK = readChunkSize

const seconds = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e9

export interface Rate {
  readonly objects: number
  readonly bytes: number
  readonly seconds: number
}
export const perSecond = (r: Rate) => r.objects / r.seconds
export const mibPerSecond = (r: Rate) => r.bytes / MiB / r.seconds

const storeOptions = (endpoint: string, bucket: string, connections: number): S3Store.S3StoreOptions => ({
  endpoint,
  region: "us-east-1",
  bucket,
  pathStyle: true,
  accessKey: Redacted.make(ACCESS),
  secretKey: Redacted.make(SECRET),
  partSize: 20 * MiB,
  partConcurrency: 4,
  connections,
  retry: defaultPolicy(6)
})

export const createBucket = async (endpoint: string, bucket: string) => {
  const client = S3Store.makeClient(storeOptions(endpoint, bucket, 1))
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
  } finally {
    client.destroy()
  }
}

/**
 * PostgreSQL's large-object read rate through @effect/sql-pg: the better of one `lo_get` per object and
 * 100 objects per statement (`unnest`), `concurrency` statements in flight on as many connections.
 * Large objects are read in `lo_get` chunks of lo-migrate's size (`readChunkSize`, 2 MiB).
 */
export const rawRead = (url: string, rows: ReadonlyArray<Listed>, concurrency: number) =>
  withPg(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const bytes = rows.reduce((n, r) => n + r.size, 0)
    const readOne = (r: Listed) =>
      Effect.gen(function*() {
        let offset = 0
        while (true) {
          const [c] = yield* sql<{ c: Uint8Array }>`SELECT lo_get(${r.oid}, ${offset}, ${CHUNK}) AS c`
          offset += c!.c.length
          if (c!.c.length < CHUNK) return
        }
      })
    let start = process.hrtime.bigint()
    yield* Effect.forEach(rows, readOne, { concurrency, discard: true })
    const single: Rate = { objects: rows.length, bytes, seconds: seconds(start) }
    if (rows.every((r) => r.size > 1024 * 1024)) return { best: single, single, batched: undefined }
    const batches: Array<ReadonlyArray<Listed>> = []
    for (let i = 0; i < rows.length; i += 100) batches.push(rows.slice(i, i + 100))
    start = process.hrtime.bigint()
    yield* Effect.forEach(batches, (b) =>
      sql`SELECT lo_get(u.oid) AS c FROM unnest(${b.map((r) => r.oid)}::oid[]) AS u(oid)`, { concurrency, discard: true })
    const batched: Rate = { objects: rows.length, bytes, seconds: seconds(start) }
    return { best: batched.seconds < single.seconds ? batched : single, single, batched }
  }), concurrency)

const memoryPayload = (bytes: Uint8Array): Payload => ({
  size: bytes.length,
  location: "memory",
  read: (offset, length) => Effect.succeed(bytes.subarray(offset, Math.min(bytes.length, offset + length))),
  release: Effect.void
})

/**
 * The S3 server's raw PUT rate: lo-migrate's own S3 client and request shape (S3Store.put: Content-MD5,
 * SHA-256 checksum, metadata, keep-alive pool, multipart above 20 MiB) from bytes already in memory and
 * digests already computed, `concurrency` objects in flight: what the server and the SDK allow.
 */
export const rawPut = async (endpoint: string, bucket: string, sizes: ReadonlyArray<number>, concurrency: number) => {
  await createBucket(endpoint, bucket)
  // Distinct random bytes per object (so keys differ), made and hashed before the clock starts.
  const objects = sizes.map((size) => {
    const bytes = randomBytes(size)
    const sha256 = createHash("sha256").update(bytes).digest("hex")
    return { bytes, sha256, md5: createHash("md5").update(bytes).digest("base64"), sha1: createHash("sha1").update(bytes).digest("hex") }
  })
  return Effect.runPromise(Effect.gen(function*() {
    const store = yield* ObjectStore
    const start = process.hrtime.bigint()
    yield* Effect.forEach(objects, (o) =>
      store.put({
        key: o.sha256,
        payload: memoryPayload(o.bytes),
        contentType: "application/octet-stream",
        md5: o.md5,
        sha256: o.sha256,
        metadata: { sha256: o.sha256, sha1: o.sha1, oid: "1" }
      }), { concurrency, discard: true })
    return { objects: sizes.length, bytes: sizes.reduce((a, b) => a + b, 0), seconds: seconds(start) } satisfies Rate
  }).pipe(
    Effect.provide(S3Store.layer(storeOptions(endpoint, bucket, concurrency * 4)).pipe(Layer.provide(Stats.layer))),
    Effect.scoped
  ))
}

/**
 * The naive baseline: one object at a time, as a straightforward script would do it: read the whole
 * object (lo_get chunks of lo-migrate's size), hash it, PUT it, UPDATE its row; then the next.
 */
export const naive = async (url: string, endpoint: string, bucket: string, rows: ReadonlyArray<Listed>) => {
  await createBucket(endpoint, bucket)
  const client = S3Store.makeClient(storeOptions(endpoint, bucket, 1))
  try {
    return await withPg(url, Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64)`
      const start = process.hrtime.bigint()
      for (const r of rows) {
        const chunks: Array<Uint8Array> = []
        let offset = 0
        while (true) {
          const [c] = yield* sql<{ c: Uint8Array }>`SELECT lo_get(${r.oid}, ${offset}, ${CHUNK}) AS c`
          chunks.push(c!.c)
          offset += c!.c.length
          if (c!.c.length < CHUNK) break
        }
        const body = Buffer.concat(chunks)
        const sha256 = createHash("sha256").update(body).digest("hex")
        const md5 = createHash("md5").update(body).digest("base64")
        yield* Effect.promise(() =>
          client.send(new PutObjectCommand({
            Bucket: bucket, Key: sha256, Body: body, ContentLength: body.length, ContentType: r.mime, ContentMD5: md5,
            ChecksumSHA256: Buffer.from(sha256, "hex").toString("base64")
          })))
        yield* sql`UPDATE _nice_binary SET sha2 = ${sha256} WHERE hash = ${r.hash}`
      }
      return { objects: rows.length, bytes: rows.reduce((n, r) => n + r.size, 0), seconds: seconds(start) } satisfies Rate
    }), 1)
  } finally {
    client.destroy()
  }
}

export interface EndToEnd extends Rate {
  /** wall time of the whole process, start-up and pre-flight included */
  readonly wall: number
  readonly migrated: number
  readonly cpuSeconds: number
  readonly maxRssMiB: number
}

const bin = fileURLToPath(new URL("../dist/cli/bin.js", import.meta.url))
const usageHook = fileURLToPath(new URL("./ReportUsage.ts", import.meta.url))

/** The output of a child process, its wall time, its own CPU seconds and peak RSS (from ReportUsage.ts). */
interface Measured {
  readonly stdout: string
  readonly wall: number
  readonly cpuSeconds: number
  readonly maxRssMiB: number
}

/**
 * Runs `script args` as a child Node process with ReportUsage.ts preloaded; fails unless it exits 0.
 * LO_MIGRATE_BENCH_NODE_ARGS: extra Node flags for the process under test (e.g. --cpu-prof).
 */
const runMeasured = async (
  what: string,
  script: string,
  args: ReadonlyArray<string>,
  extraEnv: Readonly<Record<string, string>> = {}
): Promise<Measured> => {
  const dir = mkdtempSync(join(tmpdir(), "lo-migrate-bench-usage-"))
  const usageFile = join(dir, "usage.json")
  try {
    const nodeArgs = (process.env.LO_MIGRATE_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== "")
    const start = process.hrtime.bigint()
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [...nodeArgs, "--import", usageHook, script, ...args], {
        env: { ...process.env, ...extraEnv, LO_MIGRATE_BENCH_USAGE: usageFile, LOG_LEVEL: "warn" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      child.on("close", (code) => resolve({ code, stdout, stderr }))
    })
    const wall = seconds(start)
    if (code !== 0) throw new Error(`${what} exited with ${code}\n${stdout}\n${stderr.slice(-4000)}`)
    const usage = JSON.parse(readFileSync(usageFile, "utf8")) as NodeJS.ResourceUsage
    return { stdout, wall, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6, maxRssMiB: usage.maxRSS / 1024 }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** lo-migrate migrate as a child process; its own CPU time and peak RSS come from ReportUsage.ts. */
export const endToEnd = async (
  url: string,
  endpoint: string,
  bucket: string,
  extraArgs: ReadonlyArray<string> = [],
  extraEnv: Readonly<Record<string, string>> = {}
): Promise<EndToEnd> => {
  await createBucket(endpoint, bucket)
  const run = await runMeasured("lo-migrate", bin, [
    "migrate", "--pg-url", url, "--s3-url", endpoint, "--access-key", ACCESS,
    "--secret-key", SECRET, "--bucket", bucket, "--interval", "3600", ...extraArgs
  ], extraEnv)
  const m = /migrated (\d+) object\(s\), .* \((\d+) bytes\) in ([\d.]+) s/.exec(run.stdout)
  if (m === null) throw new Error(`no summary in the output:\n${run.stdout}`)
  return {
    objects: Number(m[1]),
    migrated: Number(m[1]),
    bytes: Number(m[2]),
    seconds: Number(m[3]),
    wall: run.wall,
    cpuSeconds: run.cpuSeconds,
    maxRssMiB: run.maxRssMiB
  }
}

const rawPutScript = fileURLToPath(new URL("./RawPutProcess.ts", import.meta.url))

/** `rawPut` in a child process (`node --import tsx`), so it runs in the same shape of process as lo-migrate. */
export const rawPutInChild = (endpoint: string, bucket: string, sizes: ReadonlyArray<number>, concurrency: number) =>
  new Promise<Rate>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", rawPutScript, JSON.stringify({ endpoint, bucket, sizes, concurrency })], {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d))
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`raw PUT process exited with ${code}`))
      try {
        resolve(JSON.parse(out.trim().split("\n").pop()!) as Rate)
      } catch (e) {
        reject(e)
      }
    })
  })

export interface ZodbRun {
  readonly transactions: number
  readonly records: number
  /** pickle bytes read */
  readonly bytes: number
  readonly seconds: number
  /** from the first transaction read to the last one committed (no setup, no finalize) */
  readonly copySeconds: number
  readonly wall: number
  readonly cpuSeconds: number
  readonly maxRssMiB: number
}

const zodbBin = fileURLToPath(new URL("../dist/cli/zodbConvertBin.js", import.meta.url))

/** zodb-convert as a child process on `config`; its own CPU time and peak RSS come from ReportUsage.ts. */
export const zodbConvert = async (config: string, extraArgs: ReadonlyArray<string> = []): Promise<ZodbRun> => {
  const run = await runMeasured("zodb-convert", zodbBin, [config, "--progress", "json", "--interval", "3600", ...extraArgs])
  const summary = run.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, any>).find((l) => l.type === "summary")
  if (summary === undefined) throw new Error(`no summary in the output:\n${run.stdout}`)
  return {
    transactions: summary.transactions.committed,
    records: summary.records,
    bytes: summary.bytes,
    seconds: summary.records / Math.max(1e-9, summary.rates.recordsPerSecond),
    copySeconds: summary.copySeconds,
    wall: run.wall,
    cpuSeconds: run.cpuSeconds,
    maxRssMiB: run.maxRssMiB
  }
}
