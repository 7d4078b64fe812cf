/**
 * The measurements: the raw limits of the servers with the same driver and SDK settings, the naive
 * one-at-a-time baseline, and lo-migrate end to end as a child process.
 */
import * as Sdk from "@aws-sdk/client-s3"
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import { validate as validateSettings } from "../src/domain/Settings.ts"
import * as Connections from "../src/migrate/Connections.ts"
import { partConcurrency } from "../src/migrate/Migration.ts"
import { readChunkSize } from "../src/postgres/LargeObjects.ts"
import type { Payload } from "../src/core/Payload.ts"
import { ObjectStore } from "../src/s3/ObjectStore.ts"
import * as S3Store from "../src/s3/S3Store.ts"
import { type Listed, withPg } from "./Dataset.ts"

export const MiB = 1024 * 1024
export const GiB = 1024 * MiB
export const ACCESS = "S3RVER"
export const SECRET = "S3RVER"
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

/** A rate with the CPU time it cost (seconds, user + system), for the CPU per object and per GiB columns. */
export interface CpuRate extends Rate {
  readonly cpuSeconds: number
  /** peak RSS of the process that did the work, when it is a process of its own */
  readonly maxRssMiB?: number | undefined
}
export const cpuMsPerObject = (r: CpuRate) => r.cpuSeconds / r.objects * 1000
export const cpuSecondsPerGiB = (r: CpuRate) => r.cpuSeconds / (r.bytes / GiB)

/** CPU seconds (user + system) this process used since `from` (a `process.cpuUsage()`). */
export const cpuSince = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from)
  return (d.user + d.system) / 1e6
}

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

/** Keys and bytes under `prefix` in `bucket` (ListObjectsV2, every page): what a client really stored. */
export const listBucket = async (endpoint: string, bucket: string, prefix = "") => {
  const client = S3Store.makeClient(Sdk, storeOptions(endpoint, bucket, 1))
  try {
    let objects = 0
    let bytes = 0
    let token: string | undefined
    do {
      const page = await client.send(new ListObjectsV2Command({
        Bucket: bucket,
        ...(prefix === "" ? {} : { Prefix: prefix }),
        ...(token === undefined ? {} : { ContinuationToken: token })
      }))
      for (const o of page.Contents ?? []) {
        objects++
        bytes += o.Size ?? 0
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined
    } while (token !== undefined)
    return { objects, bytes }
  } finally {
    client.destroy()
  }
}

export const createBucket = async (endpoint: string, bucket: string) => {
  const client = S3Store.makeClient(Sdk, storeOptions(endpoint, bucket, 1))
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }))
  } finally {
    client.destroy()
  }
}

/**
 * PostgreSQL's large-object read rate through @effect/sql-pg: the better of one `lo_get` per object and
 * 100 objects per statement (`unnest`), `concurrency` statements in flight on as many connections.
 * Large objects are read in `lo_get` chunks of lo-migrate's size (`readChunkSize`, 2 MiB). Its CPU is
 * the bench process's during the pass (nothing else runs in it meanwhile).
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
    let cpu = process.cpuUsage()
    yield* Effect.forEach(rows, readOne, { concurrency, discard: true })
    const single: CpuRate = { objects: rows.length, bytes, seconds: seconds(start), cpuSeconds: cpuSince(cpu) }
    if (rows.every((r) => r.size > 1024 * 1024)) return { best: single, single, batched: undefined }
    const batches: Array<ReadonlyArray<Listed>> = []
    for (let i = 0; i < rows.length; i += 100) batches.push(rows.slice(i, i + 100))
    start = process.hrtime.bigint()
    cpu = process.cpuUsage()
    yield* Effect.forEach(batches, (b) =>
      sql`SELECT lo_get(u.oid) AS c FROM unnest(${b.map((r) => r.oid)}::oid[]) AS u(oid)`, { concurrency, discard: true })
    const batched: CpuRate = { objects: rows.length, bytes, seconds: seconds(start), cpuSeconds: cpuSince(cpu) }
    return { best: batched.seconds < single.seconds ? batched : single, single, batched }
  }), concurrency)

const memoryPayload = (bytes: Uint8Array): Payload => ({
  size: bytes.length,
  location: "memory",
  read: (offset, length) => Effect.succeed(bytes.subarray(offset, Math.min(bytes.length, offset + length))),
  release: Effect.void
})

/** What `rawPut` measured: the PUT phase's rate and CPU, and the whole process's CPU and peak RSS. */
export interface PutRun extends CpuRate {
  /** CPU seconds of the whole raw PUT process (start-up, making and hashing the bytes included) */
  readonly processCpuSeconds: number
  readonly maxRssMiB: number
  /**
   * the second half of the PUT phase alone (from the moment half the objects were stored to the end):
   * objects stored and CPU seconds, without the SDK's first-request set-up and the JIT's warm-up;
   * absent below 20 objects
   */
  readonly steady?: { readonly objects: number; readonly cpuSeconds: number } | undefined
}

/**
 * The S3 server's raw PUT rate: lo-migrate's own S3 client and request shape from bytes already in
 * memory and digests already computed, `concurrency` objects in flight: what the server and the SDK
 * allow. The store is built the way `migrate` builds it: `Settings.validate` of the flags the bench gives
 * lo-migrate (endpoint, keys, bucket; everything else lo-migrate's defaults), then
 * `Connections.store(settings, storers x partConcurrency, partConcurrency)` as Migration.layer calls it,
 * which goes through S3Store.layer and S3Store.makeClient; so any client setting the tool ships (agent,
 * timeouts, checksum modes, middleware options) applies here too, without a copy to keep in step.
 * `pgUrl` is only validated, never connected to. Its CPU is the process's during the PUT phase.
 */
export const rawPut = async (pgUrl: string, endpoint: string, bucket: string, sizes: ReadonlyArray<number>, concurrency: number): Promise<PutRun> => {
  await createBucket(endpoint, bucket)
  // Distinct random bytes per object (so keys differ), made and hashed before the clock starts.
  const objects = sizes.map((size) => {
    const bytes = randomBytes(size)
    const sha256 = createHash("sha256").update(bytes).digest("hex")
    return { bytes, sha256, md5: createHash("md5").update(bytes).digest("base64"), sha1: createHash("sha1").update(bytes).digest("hex") }
  })
  const settings = await Effect.runPromise(validateSettings({
    pgUrl,
    s3Url: endpoint,
    accessKey: ACCESS,
    secretKey: SECRET,
    bucket,
    storerThreads: concurrency
  }))
  const store = Connections.store(settings, settings.storerThreads * partConcurrency, partConcurrency)
  const phase = await Effect.runPromise(Effect.gen(function*() {
    const store = yield* ObjectStore
    const start = process.hrtime.bigint()
    const cpu = process.cpuUsage()
    const half = objects.length >= 20 ? Math.floor(objects.length / 2) : undefined
    let stored = 0
    let atHalf: NodeJS.CpuUsage | undefined
    yield* Effect.forEach(objects, (o) =>
      store.put({
        key: o.sha256,
        payload: memoryPayload(o.bytes),
        contentType: "application/octet-stream",
        md5: o.md5,
        sha256: o.sha256,
        metadata: { sha256: o.sha256, sha1: o.sha1, oid: "1" }
      }).pipe(Effect.tap(() => Effect.sync(() => {
        if (++stored === half) atHalf = process.cpuUsage()
      }))), { concurrency: settings.storerThreads, discard: true })
    return {
      objects: sizes.length,
      bytes: sizes.reduce((a, b) => a + b, 0),
      seconds: seconds(start),
      cpuSeconds: cpuSince(cpu),
      steady: half === undefined || atHalf === undefined ? undefined : { objects: objects.length - half, cpuSeconds: cpuSince(atHalf) }
    }
  }).pipe(
    Effect.provide(store.pipe(Layer.provide(Stats.layer))),
    Effect.scoped
  ))
  const usage = process.resourceUsage()
  return { ...phase, processCpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6, maxRssMiB: usage.maxRSS / 1024 }
}

/**
 * The naive baseline: one object at a time, as a straightforward script would do it: read the whole
 * object (lo_get chunks of lo-migrate's size), hash it, PUT it, UPDATE its row; then the next. It runs
 * in the bench process; its CPU is that process's during the loop.
 */
export const naive = async (url: string, endpoint: string, bucket: string, rows: ReadonlyArray<Listed>) => {
  await createBucket(endpoint, bucket)
  const client = S3Store.makeClient(Sdk, storeOptions(endpoint, bucket, 1))
  try {
    return await withPg(url, Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64)`
      const start = process.hrtime.bigint()
      const cpu = process.cpuUsage()
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
      return { objects: rows.length, bytes: rows.reduce((n, r) => n + r.size, 0), seconds: seconds(start), cpuSeconds: cpuSince(cpu) } satisfies CpuRate
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
  /** heap in use after a full GC at exit (runs with --expose-gc only): what the run kept */
  readonly heapAfterGcMiB?: number | undefined
}

const bin = fileURLToPath(new URL("../dist/cli/bin.js", import.meta.url))
const usageHook = fileURLToPath(new URL("./ReportUsage.ts", import.meta.url))

/** The output of a child process, its wall time, its own CPU seconds and peak RSS (from ReportUsage.ts). */
export interface Measured {
  readonly stdout: string
  readonly wall: number
  readonly cpuSeconds: number
  readonly maxRssMiB: number
  readonly heapAfterGcMiB?: number | undefined
}

/**
 * Runs `script args` as a child Node process with ReportUsage.ts preloaded; fails unless it exits 0.
 * LO_MIGRATE_BENCH_NODE_ARGS: extra Node flags for the process under test (e.g. --cpu-prof); `nodeFlags`
 * are added for this run alone (e.g. --expose-gc, for the heap kept at exit).
 */
const runMeasured = async (
  what: string,
  script: string,
  args: ReadonlyArray<string>,
  extraEnv: Readonly<Record<string, string>> = {},
  nodeFlags: ReadonlyArray<string> = []
): Promise<Measured> => {
  const dir = mkdtempSync(join(tmpdir(), "lo-migrate-bench-usage-"))
  const usageFile = join(dir, "usage.json")
  try {
    const nodeArgs = [...(process.env.LO_MIGRATE_BENCH_NODE_ARGS ?? "").split(" ").filter((a) => a !== ""), ...nodeFlags]
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
    const usage = JSON.parse(readFileSync(usageFile, "utf8")) as NodeJS.ResourceUsage & { readonly heapAfterGc?: number }
    return {
      stdout,
      wall,
      cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6,
      maxRssMiB: usage.maxRSS / 1024,
      heapAfterGcMiB: usage.heapAfterGc === undefined ? undefined : usage.heapAfterGc / MiB
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** GNU time, which reports a child's rusage (wait4: the child and every descendant it waited for). */
export const gnuTime = "/usr/bin/time"

/**
 * Runs an external program (`file args`) under GNU time (`/usr/bin/time -o FILE -f '%e %U %S %M'`), so its
 * CPU (user + system, 10 ms resolution) and peak RSS are the kernel's account of that process and of the
 * children it waited for (a shell script's psql sessions), not guesses; fails loudly unless it exits 0.
 * Wall time is taken here, around the whole run.
 */
export const runTimed = async (
  what: string,
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly env?: Readonly<Record<string, string>>; readonly unsetEnv?: ReadonlyArray<string>; readonly cwd?: string } = {}
): Promise<Measured & { readonly stderr: string }> => {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env }
  for (const name of options.unsetEnv ?? []) delete env[name]
  if (!existsSync(gnuTime)) throw new Error(`${what}: ${gnuTime} (GNU time, Debian package time) is needed to measure its CPU`)
  const dir = mkdtempSync(join(tmpdir(), "lo-migrate-bench-time-"))
  const usageFile = join(dir, "usage")
  try {
    const start = process.hrtime.bigint()
    const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
      const child = spawn(gnuTime, ["-o", usageFile, "-f", "%e %U %S %M %x", file, ...args], {
        env,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        stdio: ["ignore", "pipe", "pipe"]
      })
      let stdout = ""
      let stderr = ""
      child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
      child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
      child.on("error", reject)
      child.on("close", (code) => resolve({ code, stdout, stderr }))
    })
    const wall = seconds(start)
    if (code !== 0) throw new Error(`${what} exited with ${code}\n${stdout.slice(-4000)}\n${stderr.slice(-4000)}`)
    // the last line: GNU time writes "Command exited with non-zero status" lines before it on failure
    const line = readFileSync(usageFile, "utf8").trim().split("\n").pop() ?? ""
    const m = /^([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+)$/.exec(line)
    if (m === null) throw new Error(`${what}: unexpected GNU time output ${JSON.stringify(line)}`)
    if (Number(m[5]) !== 0) throw new Error(`${what} exited with ${m[5]}\n${stderr.slice(-4000)}`)
    return { stdout, stderr, wall, cpuSeconds: Number(m[2]) + Number(m[3]), maxRssMiB: Number(m[4]) / 1024 }
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
  extraEnv: Readonly<Record<string, string>> = {},
  nodeFlags: ReadonlyArray<string> = []
): Promise<EndToEnd> => {
  await createBucket(endpoint, bucket)
  const run = await runMeasured("lo-migrate", bin, [
    "migrate", "--pg-url", url, "--s3-url", endpoint, "--access-key", ACCESS,
    "--secret-key", SECRET, "--bucket", bucket, "--interval", "3600", ...extraArgs
  ], extraEnv, nodeFlags)
  const m = /migrated (\d+) object\(s\), .* \((\d+) bytes\) in ([\d.]+) s/.exec(run.stdout)
  if (m === null) throw new Error(`no summary in the output:\n${run.stdout}`)
  return {
    objects: Number(m[1]),
    migrated: Number(m[1]),
    bytes: Number(m[2]),
    seconds: Number(m[3]),
    wall: run.wall,
    cpuSeconds: run.cpuSeconds,
    maxRssMiB: run.maxRssMiB,
    heapAfterGcMiB: run.heapAfterGcMiB
  }
}

const rawPutScript = fileURLToPath(new URL("./RawPutProcess.ts", import.meta.url))

/** `rawPut` in a child process (`node --import tsx`), so it runs in the same shape of process as lo-migrate. */
export const rawPutInChild = (pgUrl: string, endpoint: string, bucket: string, sizes: ReadonlyArray<number>, concurrency: number) =>
  new Promise<PutRun>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", rawPutScript, JSON.stringify({ pgUrl, endpoint, bucket, sizes, concurrency })], {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d))
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`raw PUT process exited with ${code}`))
      try {
        resolve(JSON.parse(out.trim().split("\n").pop()!) as PutRun)
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
