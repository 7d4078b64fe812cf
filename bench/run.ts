/**
 * `npm run bench`: lo-migrate against the limits of the servers it runs on, all in one run on the same
 * throwaway PostgreSQL cluster and s3rver process, so the ratios compare like with like.
 *
 *   LO_MIGRATE_BENCH_QUICK=1   smaller counts (a few minutes), to try it out
 *   LO_MIGRATE_BENCH_ONLY=small,medium,large,mix,huge,scale,peer,latency,zodb,rss100k   run only these cases
 *     (peer: the two-step peer, lo_export then rclone, in the 4 KiB and 64 KiB classes; alone it runs
 *      just what its goals need there: raw PUT, lo-migrate, the peer; with small or medium, in those)
 *     (latency: 30 ms added to every S3 request by a delaying proxy; default settings against a sweep
 *      of fixed --storer-threads)
 *     (zodb: zodb-convert over the fixtures' bench-scale FileStorage, against COPY of the same rows)
 *     (rss100k: 100,000 small objects with default settings, for the peak-RSS target; not in the default set)
 *   LO_MIGRATE_BENCH_NODE_ARGS="--cpu-prof"   extra Node flags for the lo-migrate process
 *   LO_MIGRATE_BENCH_CHART=FILE   where the SVG chart of the goals goes (default: bench/results/ratios.svg
 *     for a full run of the default cases, bench/results/ratios-<quick,cases>.svg otherwise)
 *
 * Prints markdown tables (pasted into BENCHMARKS.md), the goals of issue 16 measured in this run
 * (goal, measured, met), and the conditions they were measured under; writes the chart of the goals.
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import * as Os from "node:os"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { defaults } from "../src/domain/Settings.ts"
import * as Dataset from "./Dataset.ts"
import { findPgBinDir } from "../src/embedded/TempCluster.ts"
import * as Goals from "./Goals.ts"
import {
  type CpuRate,
  cpuMsPerObject,
  cpuSecondsPerGiB,
  type EndToEnd,
  endToEnd,
  GiB,
  MiB,
  mibPerSecond,
  naive,
  perSecond,
  type PutRun,
  type Rate,
  rawPutInChild,
  rawRead,
  zodbConvert,
  type ZodbRun
} from "./Measure.ts"
import { peer, peerTools, peerTransfers } from "./Peer.ts"
import { startDelayProxy, startPostgres, startS3rver } from "./Servers.ts"

const quick = (process.env.LO_MIGRATE_BENCH_QUICK ?? "") !== "" && process.env.LO_MIGRATE_BENCH_QUICK !== "0"
const only = (process.env.LO_MIGRATE_BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
const optional = new Set(["rss100k"])
const wanted = (name: string) => (only.length === 0 && !optional.has(name)) || only.includes(name)
const KiB = 1024

// The scaling series is small objects at 1x, 4x and 16x, run back to back (16x = case (a)'s count).
const counts = quick
  ? { small: 2_000, medium: 200, large: 2, largeSize: 64 * MiB, mix: 150, huge: 256 * MiB, naiveSmall: 300, naiveMedium: 60, rawPutMax: 1_000, latency: 400 }
  : { small: 20_000, medium: 2_000, large: 8, largeSize: 64 * MiB, mix: 1_000, huge: 1024 * MiB, naiveSmall: 500, naiveMedium: 200, rawPutMax: 2_000, latency: 4_000 }
const scaleBase = counts.small / 16
/** `--workers` values tried on the 4x data set besides the default (5: the original's storer count) */
const sweep = [5]
/** the latency case: ms added to every S3 request, and the fixed `--storer-threads` values swept */
const latencyMs = 30
const storerSweep = quick ? [4, 16, 64] : [4, 8, 16, 32, 64]

const receivers = defaults.receiverThreads
const storers = defaults.storerThreads

const f = (n: number, digits = 0) => n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
const log = (text: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`)

interface Row {
  readonly case: string
  readonly cells: ReadonlyArray<string>
}
const results: Array<Row> = []
const e2eRows: Array<{ name: string; r: EndToEnd }> = []
const notes: Array<string> = []
const fixedCosts: Array<string> = []
const putSpread: Array<string> = []
const zodbRows: Array<{ name: string; r: ZodbRun }> = []
let zodbCopy: { readonly rows: number; readonly seconds: number } | undefined

/** Every client's run in a size class, for the CPU per object and per GiB table. */
interface ClientRow {
  readonly case: string
  readonly client: string
  /** seconds: the wall time the rate is taken over */
  readonly r: CpuRate
  /** what the time and the CPU cover */
  readonly covers: string
}
const clientRows: Array<ClientRow> = []
/** What the goals need of each size class, by the dataset's key (small, medium, large, huge). */
interface ClassResult {
  readonly label: string
  readonly e2e: EndToEnd
  readonly put: PutRun
  readonly read: CpuRate | undefined
  readonly peer: CpuRate | undefined
  /** lo-migrate rerun with nothing left to do: its fixed cost */
  readonly fixed: EndToEnd | undefined
}
const classes = new Map<string, ClassResult>()
const latencyRows: Array<{ name: string; storers: string; r: EndToEnd }> = []
let latency: { readonly defaults: ReadonlyArray<EndToEnd>; readonly sweep: ReadonlyArray<{ storers: number; r: EndToEnd }> } | undefined
const scaleRuns = new Map<number, EndToEnd>()
let peerVersions: string | undefined

/** CPU ms per object of the raw PUT's second half (no SDK set-up, no JIT warm-up) */
const steadyMs = (s: { readonly objects: number; readonly cpuSeconds: number }) => s.cpuSeconds / s.objects * 1000

/** lo-migrate's rate over its whole process (start-up and pre-flight included): what the goals compare. */
const wallRate = (r: EndToEnd): CpuRate => ({ objects: r.objects, bytes: r.bytes, seconds: r.wall, cpuSeconds: r.cpuSeconds, maxRssMiB: r.maxRssMiB })

/**
 * PostgreSQL's own bulk insert of the rows zodb-convert wrote: object_state (and transaction_log)
 * exported with psql's \\copy, then timed while \\copy loads them into empty tables of the same shape.
 */
const copyBaseline = async (url: string, dir: string) => {
  const bin = findPgBinDir()
  const psql = bin === undefined ? "psql" : join(bin, "psql")
  const run = (command: string) => execFileSync(psql, ["-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", command], { encoding: "utf8" })
  const rowsFile = join(dir, "object_state.copy")
  const logFile = join(dir, "transaction_log.copy")
  run(`\\copy object_state TO '${rowsFile}'`)
  run(`\\copy transaction_log TO '${logFile}'`)
  run(`CREATE TABLE copy_object_state (LIKE object_state INCLUDING ALL); CREATE TABLE copy_transaction_log (LIKE transaction_log INCLUDING ALL)`)
  const rows = Number(run(`SELECT count(*) FROM object_state`).trim().split("\n").find((l) => /^\s*\d+\s*$/.test(l)) ?? "0")
  const start = process.hrtime.bigint()
  run(`\\copy copy_transaction_log FROM '${logFile}'`)
  run(`\\copy copy_object_state FROM '${rowsFile}'`)
  return { rows, seconds: Number(process.hrtime.bigint() - start) / 1e9 }
}

const e2eLine = (name: string, r: EndToEnd) => {
  e2eRows.push({ name, r })
  log(`${name}: ${f(perSecond(r))} obj/s, ${f(mibPerSecond(r), 1)} MiB/s, ${f(r.cpuSeconds, 1)} CPU s, ${f(r.maxRssMiB)} MiB peak RSS`)
}

const main = async () => {
  const started = Date.now()
  log(`${quick ? "quick" : "full"} mode; building dist/`)
  execFileSync(process.execPath, [new URL("../node_modules/typescript/bin/tsc", import.meta.url).pathname, "-p", "tsconfig.build.json"], {
    cwd: new URL("..", import.meta.url).pathname,
    stdio: "inherit"
  })
  const pg = await startPostgres()
  const s3 = await startS3rver()
  const loadBefore = Os.loadavg()
  let pgVersion = ""
  try {
    pgVersion = await Dataset.withPg(pg.server.adminUrl, Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const [v] = yield* sql<{ v: string }>`SELECT current_setting('server_version') AS v`
      return v!.v
    }), 1)
    let bucketNo = 0
    const bucket = (what: string) => `bench-${what}-${++bucketNo}`

    /**
     * One size class: raw read, raw PUT before, naive baseline (on a subset), lo-migrate end to end, the
     * two-step peer, raw PUT after. `lean`: only what the goals need (no raw read, no naive loop).
     */
    const sizeClass = async (
      name: string,
      label: string,
      specs: ReadonlyArray<Dataset.ObjectSpec>,
      naiveCount: number,
      unit: "obj" | "mib",
      options: { readonly peer?: boolean; readonly lean?: boolean } = {}
    ) => {
      const total = specs.reduce((n, s) => n + s.size, 0)
      log(`${name}: filling ${f(specs.length)} objects, ${f(total / MiB)} MiB`)
      const url = await Dataset.createDatabase(pg.server, `bench_${name}`)
      await Dataset.insertObjects(url, specs)
      const rows = await Dataset.listRows(url, specs.length)
      let read: Awaited<ReturnType<typeof rawRead>> | undefined
      if (options.lean !== true) {
        log(`${name}: raw read`)
        read = await rawRead(url, rows, receivers)
      }
      // The raw PUT rate is taken before and after lo-migrate's (and the peer's) run (on up to rawPutMax
      // objects) and added up, so a change in the machine's load during the case shows and evens out.
      const putSizes = specs.slice(0, counts.rawPutMax).map((s) => s.size)
      log(`${name}: raw PUT (before)`)
      const putBefore = await rawPutInChild(url, s3.endpoint, bucket(`${name}-raw`), putSizes, storers)
      let base: CpuRate | undefined
      if (naiveCount > 0 && options.lean !== true) {
        log(`${name}: naive baseline on ${naiveCount} objects`)
        base = await naive(url, s3.endpoint, bucket(`${name}-naive`), rows.slice(0, naiveCount))
        await Dataset.resetMarks(url)
      }
      log(`${name}: lo-migrate`)
      const e2e = await endToEnd(url, s3.endpoint, bucket(name))
      if (e2e.migrated !== specs.length) throw new Error(`${name}: lo-migrate migrated ${e2e.migrated} of ${specs.length} objects`)
      e2eLine(label, e2e)
      // lo-migrate's fixed cost: the same command again on the same database, every row already
      // migrated (start-up, pre-flight, listing; nothing copied), so its CPU per object can be read
      // with and without it
      let fixed: EndToEnd | undefined
      if (unit === "obj") {
        log(`${name}: lo-migrate with nothing left to do (its fixed cost)`)
        fixed = await endToEnd(url, s3.endpoint, bucket(`${name}-again`))
        if (fixed.migrated !== 0) throw new Error(`${name}: the rerun migrated ${fixed.migrated} objects, expected none`)
      }
      let two: Awaited<ReturnType<typeof peer>> | undefined
      if (options.peer === true) {
        const tools = peerTools()
        peerVersions = `${tools.psqlVersion} (\\lo_export); ${tools.rcloneVersion} (Debian package), --transfers ${peerTransfers}`
        log(`${name}: the peer (lo_export, then rclone copy --transfers ${peerTransfers})`)
        two = await peer(tools, url, s3.endpoint, bucket(`${name}-peer`), { objects: specs.length, bytes: total })
        log(`${name}: peer ${f(perSecond(two.total))} obj/s (export ${f(two.export.seconds, 1)} s, ${f(two.export.cpuSeconds, 1)} CPU s; ` +
          `rclone ${f(two.upload.seconds, 1)} s, ${f(two.upload.cpuSeconds, 1)} CPU s)`)
      }
      log(`${name}: raw PUT (after)`)
      const putAfter = await rawPutInChild(url, s3.endpoint, bucket(`${name}-raw`), putSizes, storers)
      const put: PutRun = {
        objects: putBefore.objects + putAfter.objects,
        bytes: putBefore.bytes + putAfter.bytes,
        seconds: putBefore.seconds + putAfter.seconds,
        cpuSeconds: putBefore.cpuSeconds + putAfter.cpuSeconds,
        processCpuSeconds: putBefore.processCpuSeconds + putAfter.processCpuSeconds,
        maxRssMiB: Math.max(putBefore.maxRssMiB, putAfter.maxRssMiB),
        steady: putBefore.steady === undefined || putAfter.steady === undefined ? undefined : {
          objects: putBefore.steady.objects + putAfter.steady.objects,
          cpuSeconds: putBefore.steady.cpuSeconds + putAfter.steady.cpuSeconds
        }
      }
      const rate = (r: Rate) => unit === "obj" ? perSecond(r) : mibPerSecond(r)
      putSpread.push(`${label}: raw PUT ${f(rate(putBefore))} before, ${f(rate(putAfter))} after lo-migrate's run${two === undefined ? "" : " and the peer's"}`)
      classes.set(name, { label, e2e, put, read: read?.best, peer: two?.total, fixed })

      clientRows.push({ case: label, client: "lo-migrate", r: wallRate(e2e), covers: "its process: start-up to exit (ReportUsage.ts)" })
      if (fixed !== undefined) {
        fixedCosts.push(`- ${label}: lo-migrate rerun with nothing left to do (its fixed cost: start-up, pre-flight, listing): ` +
          `${f(fixed.wall, 2)} s wall, ${f(fixed.cpuSeconds, 2)} CPU s, ${f(fixed.maxRssMiB)} MiB peak RSS`)
      }
      clientRows.push({
        case: label,
        client: `raw PUT (${storers} in flight)`,
        r: put,
        covers: `the PUT phase of its process, ${f(put.objects)} objects (before + after)` +
          (put.steady === undefined ? "" : `; its second half alone: ${f(steadyMs(put.steady), 3)} CPU ms / object`)
      })
      if (two !== undefined) {
        clientRows.push({ case: label, client: "peer: lo_export (psql)", r: two.export, covers: "both psql sessions (GNU time)" })
        clientRows.push({ case: label, client: `peer: rclone copy --transfers ${peerTransfers}`, r: two.upload, covers: "the rclone process (GNU time)" })
        clientRows.push({ case: label, client: "peer: both steps", r: two.total, covers: "the two steps added" })
      }
      if (base !== undefined) clientRows.push({ case: label, client: "naive loop", r: base, covers: "the loop, in the bench process" })
      if (read !== undefined) {
        clientRows.push({ case: label, client: `raw read (${receivers} connections, ${read.best === read.batched ? "batched" : "single"})`, r: read.best, covers: "the read pass, in the bench process" })
      }

      const limitCells = read === undefined ? ["n/a", "n/a"] : [
        f(rate(read.best)) + (read.batched === undefined ? "" : read.best === read.batched ? " (batched)" : " (single)"),
        f(rate(e2e) / Math.min(rate(read.best), rate(put)), 2)
      ]
      results.push({
        case: label,
        cells: [
          unit === "obj" ? "objects/s" : "MiB/s",
          limitCells[0]!,
          f(rate(put)),
          base === undefined ? "n/a" : f(rate(base), 1),
          two === undefined ? "n/a" : f(rate(two.total), unit === "obj" ? 0 : 1),
          f(rate(e2e)),
          limitCells[1]!,
          f(rate(e2e) / rate(put), 2),
          base === undefined ? "n/a" : f(rate(e2e) / rate(base), 1),
          two === undefined ? "n/a" : f(rate(wallRate(e2e)) / rate(two.total), 2),
          // what even a tool at the raw PUT rate could reach against the naive loop
          base === undefined || read === undefined ? "n/a" : f(Math.min(rate(read.best), rate(put)) / rate(base), 1)
        ]
      })
    }

    const peerAlone = only.includes("peer") && !wanted("small") && !wanted("medium")
    if (wanted("small") || peerAlone) {
      await sizeClass("small", `(a) ${f(counts.small)} x 4 KiB`, Dataset.uniform("s", counts.small, 4 * KiB), counts.naiveSmall, "obj", {
        peer: wanted("peer"),
        lean: peerAlone
      })
    }
    if (wanted("medium") || peerAlone) {
      await sizeClass("medium", `(b) ${f(counts.medium)} x 64 KiB`, Dataset.uniform("m", counts.medium, 64 * KiB), counts.naiveMedium, "obj", {
        peer: wanted("peer"),
        lean: peerAlone
      })
    }
    if (wanted("large")) {
      await sizeClass("large", `(c) ${counts.large} x ${counts.largeSize / MiB} MiB`, Dataset.uniform("l", counts.large, counts.largeSize), 0, "mib")
    }
    if (wanted("mix")) {
      const specs = Dataset.mix("x", counts.mix)
      const total = specs.reduce((n, s) => n + s.size, 0)
      log(`mix: filling ${specs.length} objects, ${f(total / MiB)} MiB`)
      const url = await Dataset.createDatabase(pg.server, "bench_mix")
      await Dataset.insertObjects(url, specs)
      log("mix: lo-migrate")
      e2eLine(`(d) mix of ${f(counts.mix)} (${f(total / MiB)} MiB)`, await endToEnd(url, s3.endpoint, bucket("mix")))
    }
    if (wanted("huge")) {
      await sizeClass("huge", `one ${f(counts.huge / MiB)} MiB object`, [{ seed: "huge", size: counts.huge, mime: "application/octet-stream" }], 0, "mib")
    }
    if (wanted("scale")) {
      const url = await Dataset.createDatabase(pg.server, "bench_scale")
      let have = 0
      for (const factor of [1, 4, 16]) {
        const want = scaleBase * factor
        log(`scale ${factor}x: filling up to ${f(want)} objects`)
        await Dataset.insertObjects(url, Dataset.uniform("k", want - have, 4 * KiB, have))
        have = want
        if (factor > 1) await Dataset.resetMarks(url)
        log(`scale ${factor}x: lo-migrate`)
        // --expose-gc: ReportUsage.ts forces a full GC at exit and reports the heap still in use (kept memory)
        const run = await endToEnd(url, s3.endpoint, bucket("scale"), [], {}, ["--expose-gc"])
        scaleRuns.set(factor, run)
        e2eLine(`scaling ${factor}x: ${f(want)} x 4 KiB`, run)
        if (factor === 4) {
          for (const workers of sweep) {
            await Dataset.resetMarks(url)
            log(`workers ${workers}: lo-migrate`)
            e2eLine(`--workers ${workers}: ${f(have)} x 4 KiB`, await endToEnd(url, s3.endpoint, bucket("workers"), ["--workers", String(workers)]))
          }
        }
      }
    }
    if (wanted("latency")) {
      const proxy = await startDelayProxy(s3.endpoint, latencyMs)
      try {
        log(`latency: filling ${f(counts.latency)} objects of 4 KiB; S3 through a proxy adding ${latencyMs} ms to every request`)
        const url = await Dataset.createDatabase(pg.server, "bench_latency")
        await Dataset.insertObjects(url, Dataset.uniform("t", counts.latency, 4 * KiB))
        const once = async (name: string, storerArgs: ReadonlyArray<string>) => {
          await Dataset.resetMarks(url)
          log(`latency: lo-migrate ${name}`)
          const r = await endToEnd(url, proxy.endpoint, bucket("latency"), storerArgs)
          if (r.migrated !== counts.latency) throw new Error(`latency ${name}: migrated ${r.migrated} of ${counts.latency} objects`)
          log(`latency ${name}: ${f(perSecond(wallRate(r)))} obj/s over the process, ${f(r.cpuSeconds, 1)} CPU s`)
          return r
        }
        // the default settings before and after the sweep, so a change in the machine's load shows and evens out
        const first = await once("default settings (before the sweep)", [])
        latencyRows.push({ name: "default settings, before the sweep", storers: `adaptive (${storers}-${defaults.maxStorerThreads})`, r: first })
        const swept: Array<{ storers: number; r: EndToEnd }> = []
        for (const n of storerSweep) {
          const r = await once(`--storer-threads ${n}`, ["--storer-threads", String(n)])
          swept.push({ storers: n, r })
          latencyRows.push({ name: `--storer-threads ${n}`, storers: String(n), r })
        }
        const last = await once("default settings (after the sweep)", [])
        latencyRows.push({ name: "default settings, after the sweep", storers: `adaptive (${storers}-${defaults.maxStorerThreads})`, r: last })
        latency = { defaults: [first, last], sweep: swept }
      } finally {
        await proxy.stop()
      }
    }
    if (wanted("zodb")) {
      const dataFs = fileURLToPath(new URL("../test/data/zodb/bench-scale/Data.fs", import.meta.url))
      for (const workers of [1, 4]) {
        const url = await Dataset.createDatabase(pg.server, `bench_zodb_w${workers}`, { nice2: false })
        const dir = mkdtempSync(join(Os.tmpdir(), "lo-migrate-bench-zodb-"))
        const config = join(dir, "convert.conf")
        writeFileSync(config, `<filestorage source>\n  path ${dataFs}\n</filestorage>\n<pgjsonb destination>\n  dsn ${url}\n</pgjsonb>\n`)
        log(`zodb: zodb-convert -w ${workers}`)
        const r = await zodbConvert(config, ["-w", String(workers)])
        zodbRows.push({ name: `bench-scale Data.fs, -w ${workers}`, r })
        log(`zodb -w ${workers}: ${f(r.records / r.copySeconds)} records/s in the copy phase, ${f(r.cpuSeconds, 1)} CPU s, ${f(r.maxRssMiB)} MiB peak RSS`)
        if (workers === 4) zodbCopy = await copyBaseline(url, dir)
        rmSync(dir, { recursive: true, force: true })
      }
    }
    if (wanted("rss100k")) {
      const n = quick ? 20_000 : 100_000
      log(`rss100k: filling ${f(n)} objects`)
      const url = await Dataset.createDatabase(pg.server, "bench_rss100k")
      await Dataset.insertObjects(url, Dataset.uniform("r", n, 4 * KiB))
      log("rss100k: lo-migrate")
      e2eLine(`${f(n)} x 4 KiB, default settings`, await endToEnd(url, s3.endpoint, bucket("rss")))
    }
  } finally {
    await s3.stop()
    await pg.stop()
  }
  const loadAfter = Os.loadavg()

  const cpu = Os.cpus()
  const s3rverVersion = (JSON.parse(readFileSync(new URL("../node_modules/s3rver/package.json", import.meta.url), "utf8")) as { version: string }).version
  const date = new Date().toISOString()
  const conditions = [
    `mode: ${quick ? "quick (LO_MIGRATE_BENCH_QUICK=1)" : "full"}${only.length === 0 ? "" : `, LO_MIGRATE_BENCH_ONLY=${only.join(",")}`}; date ${date}; bench took ${f((Date.now() - started) / 1000)} s`,
    `machine: ${cpu.length} x ${cpu[0]?.model ?? "?"}, ${f(Os.totalmem() / 1024 ** 3)} GiB RAM, ${Os.type()} ${Os.release()}`,
    `load average (1 min) before/after: ${f(loadBefore[0]!, 2)} / ${f(loadAfter[0]!, 2)}`,
    `Node ${process.version}; PostgreSQL ${pgVersion} (throwaway cluster, fsync off, shared_buffers 128MB); s3rver ${s3rverVersion} in its own process`
  ]
  const out: Array<string> = []
  out.push(`## Conditions`, "")
  for (const c of conditions) out.push(`- ${c}`)
  out.push(`- lo-migrate default settings: ${receivers} receivers, ${storers} storers, ${defaults.committerThreads} committers; raw reads at ${receivers} connections, raw PUTs at ${storers} in flight`)
  if (peerVersions !== undefined) {
    out.push(`- peer: ${peerVersions}; CPU and peak RSS of psql and rclone from GNU time (${"`/usr/bin/time -f '%e %U %S %M'`"}: the kernel's rusage of the process and the children it waited for)`)
  }
  if (latency !== undefined) {
    out.push(`- latency case: ${f(counts.latency)} x 4 KiB through bench/DelayProxy.ts (its own process), which holds every S3 request ${latencyMs} ms before forwarding it to s3rver`)
  }
  if (results.length > 0) {
    out.push("", "## Against the limits", "")
    out.push("lo-migrate's rate here is its summary's (pre-flight included, process start-up not); wall / peer uses its whole process's wall time, as the peer's is.", "")
    out.push("| case | unit | raw read | raw PUT | naive | peer | lo-migrate | / min(read, PUT) | / raw PUT | / naive | wall / peer | ceiling vs naive |")
    out.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const r of results) out.push(`| ${r.case} | ${r.cells.join(" | ")} |`)
  }
  if (clientRows.length > 0) {
    out.push("", "## CPU per client", "")
    out.push("Every client's wall time and CPU (user + system) for the same objects of each case; seconds are wall seconds of what the last column names.", "")
    out.push("| case | client | objects | MiB | seconds | objects/s | MiB/s | CPU s | CPU ms / object | CPU s / GiB | peak RSS MiB | time and CPU of |")
    out.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for (const { case: c, client, r, covers } of clientRows) {
      out.push(`| ${c} | ${client} | ${f(r.objects)} | ${f(r.bytes / MiB)} | ${f(r.seconds, 2)} | ${f(perSecond(r))} | ${f(mibPerSecond(r), 1)} | ${f(r.cpuSeconds, 2)} | ${f(cpuMsPerObject(r), 3)} | ${f(cpuSecondsPerGiB(r), 1)} | ${r.maxRssMiB === undefined ? "n/a" : f(r.maxRssMiB)} | ${covers} |`)
    }
  }
  if (fixedCosts.length > 0) out.push("", ...fixedCosts)
  if (e2eRows.length > 0) {
    out.push("", "## lo-migrate end to end (child process, default settings)", "")
    out.push("| run | objects | MiB | seconds | process wall s | objects/s | MiB/s | CPU s | CPU s / 1,000 obj | CPU s / GiB | peak RSS MiB | heap kept MiB |")
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const { name, r } of e2eRows) {
      out.push(`| ${name} | ${f(r.objects)} | ${f(r.bytes / MiB)} | ${f(r.seconds, 1)} | ${f(r.wall, 1)} | ${f(perSecond(r))} | ${f(mibPerSecond(r), 1)} | ${f(r.cpuSeconds, 1)} | ${f(r.cpuSeconds / r.objects * 1000, 2)} | ${f(r.cpuSeconds / (r.bytes / GiB), 1)} | ${f(r.maxRssMiB)} | ${r.heapAfterGcMiB === undefined ? "n/a" : f(r.heapAfterGcMiB, 1)} |`)
    }
    out.push("", "seconds: lo-migrate's summary (pre-flight included, process start-up not); process wall s: its whole process; heap kept: heap in use after a full GC at exit (scaling runs, `--expose-gc`).")
  }
  if (latencyRows.length > 0) {
    out.push("", `## Latency: ${latencyMs} ms added to every S3 request (${f(counts.latency)} x 4 KiB)`, "")
    out.push("| run | storers | objects | process wall s | objects/s (wall) | objects/s (summary) | CPU s | CPU ms / object | peak RSS MiB |")
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const { name, storers: n, r } of latencyRows) {
      out.push(`| ${name} | ${n} | ${f(r.objects)} | ${f(r.wall, 2)} | ${f(perSecond(wallRate(r)))} | ${f(perSecond(r))} | ${f(r.cpuSeconds, 1)} | ${f(cpuMsPerObject(r), 3)} | ${f(r.maxRssMiB)} |`)
    }
  }

  // The goals of issue 16, each measured in this run.
  const goals: Array<Goals.Goal> = []
  for (const [key, size] of [["small", "4 KiB"], ["medium", "64 KiB"]] as const) {
    const c = classes.get(key)
    if (c === undefined) continue
    const lo = wallRate(c.e2e)
    if (c.peer !== undefined) {
      goals.push({
        name: `${size}: lo-migrate wall rate / peer's`,
        measured: perSecond(lo) / perSecond(c.peer),
        threshold: 1.2,
        direction: ">=",
        unit: "x",
        how: `${f(perSecond(lo))} vs ${f(perSecond(c.peer))} objects/s; lo-migrate's process wall, the peer's lo_export + rclone wall`
      })
    }
    goals.push({
      name: `${size}: lo-migrate CPU per object / raw PUT's`,
      measured: cpuMsPerObject(lo) / cpuMsPerObject(c.put),
      threshold: 1.2,
      direction: "<=",
      unit: "x",
      how: `${f(cpuMsPerObject(lo), 3)} vs ${f(cpuMsPerObject(c.put), 3)} ms; lo-migrate's whole process, the raw PUT's PUT phase` +
        (c.fixed === undefined ? "" : `; without lo-migrate's fixed cost (${f(c.fixed.cpuSeconds, 2)} CPU s for a rerun with nothing to do) ` +
          `${f((lo.cpuSeconds - c.fixed.cpuSeconds) / lo.objects * 1000, 3)} ms, ratio ${f((lo.cpuSeconds - c.fixed.cpuSeconds) / lo.objects * 1000 / cpuMsPerObject(c.put), 2)}`) +
        (c.put.steady === undefined ? "" : `; the raw PUT's second half alone ${f(steadyMs(c.put.steady), 3)} ms, ratio ${f(cpuMsPerObject(lo) / steadyMs(c.put.steady), 2)}`)
    })
  }
  for (const key of ["large", "huge"]) {
    const c = classes.get(key)
    if (c === undefined) continue
    const lo = wallRate(c.e2e)
    goals.push({
      name: `${c.label}: CPU s per GiB`,
      measured: cpuSecondsPerGiB(lo),
      threshold: 6,
      direction: "<=",
      unit: "s/GiB",
      how: `lo-migrate's whole process, ${f(lo.cpuSeconds, 1)} CPU s`
    })
    if (c.read !== undefined) {
      const limit = Math.min(mibPerSecond(c.read), mibPerSecond(c.put))
      goals.push({
        name: `${c.label}: wall rate / min(raw read, raw PUT)`,
        measured: mibPerSecond(lo) / limit,
        threshold: 0.8,
        direction: ">=",
        unit: "x",
        how: `${f(mibPerSecond(lo), 1)} MiB/s over the process wall against ${f(limit, 1)}; by the summary's rate ${f(mibPerSecond(c.e2e) / limit, 2)}`
      })
    }
    if (key === "huge") {
      goals.push({ name: `${c.label}: peak RSS`, measured: c.e2e.maxRssMiB, threshold: 256, direction: "<", unit: "MiB", how: "lo-migrate's maxRSS (ReportUsage.ts)" })
    }
  }
  if (latency !== undefined && latency.sweep.length > 0) {
    const objects = latency.defaults.reduce((n, r) => n + r.objects, 0)
    const wall = latency.defaults.reduce((n, r) => n + r.wall, 0)
    const best = latency.sweep.reduce((a, b) => perSecond(wallRate(b.r)) > perSecond(wallRate(a.r)) ? b : a)
    goals.push({
      name: `latency ${latencyMs} ms: default / best fixed --storer-threads (${best.storers})`,
      measured: objects / wall / perSecond(wallRate(best.r)),
      threshold: 0.9,
      direction: ">=",
      unit: "x",
      how: `${f(objects / wall)} (defaults, before and after the sweep) vs ${f(perSecond(wallRate(best.r)))} objects/s over the process wall; swept ${storerSweep.join(", ")}`
    })
  }
  const [s1, s4, s16] = [scaleRuns.get(1), scaleRuns.get(4), scaleRuns.get(16)]
  if (s4 !== undefined && s16 !== undefined) {
    goals.push({
      name: "scaling: time per object, 16x / 4x",
      measured: (s16.seconds / s16.objects) / (s4.seconds / s4.objects),
      threshold: 1.25,
      direction: "<=",
      unit: "x",
      how: `${f(s4.seconds, 1)} s for ${f(s4.objects)}, ${f(s16.seconds, 1)} s for ${f(s16.objects)} (summary seconds); threshold the bench's own`
    })
  }
  if (s1?.heapAfterGcMiB !== undefined && s16?.heapAfterGcMiB !== undefined) {
    goals.push({
      name: "scaling: heap kept at exit, 16x / 1x",
      measured: s16.heapAfterGcMiB / s1.heapAfterGcMiB,
      threshold: 1.25,
      direction: "<=",
      unit: "x",
      how: `${f(s1.heapAfterGcMiB, 1)} and ${f(s16.heapAfterGcMiB, 1)} MiB after a full GC at exit; threshold the bench's own`
    })
  }
  if (goals.length > 0) {
    out.push("", "## Goals (issue 16), measured in this run", "")
    out.push(...Goals.table(goals))
    const chart = process.env.LO_MIGRATE_BENCH_CHART?.trim() ||
      fileURLToPath(new URL(`./results/${!quick && only.length === 0 ? "ratios" : ["ratios", quick ? "quick" : "full", ...only].join("-")}.svg`, import.meta.url))
    mkdirSync(dirname(chart), { recursive: true })
    writeFileSync(chart, Goals.svg(goals, `lo-migrate: the goals of issue 16 (${quick ? "quick scale" : "full scale"})`, conditions))
    out.push("", `Chart of these goals: ${relative(process.cwd(), chart)}`)
    log(`goals: ${goals.filter(Goals.met).length} of ${goals.length} met; chart written to ${chart}`)
  }
  if (zodbRows.length > 0) {
    out.push("", "## zodb-convert (child process; bench-scale Data.fs: 502 transactions, 22,350 records, no blobs)", "")
    out.push("| run | transactions | records | MiB of pickles | run s | copy s | records/s (copy) | MiB/s (copy) | process wall s | CPU s | CPU ms / record | peak RSS MiB |")
    out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for (const { name, r } of zodbRows) {
      out.push(`| ${name} | ${f(r.transactions)} | ${f(r.records)} | ${f(r.bytes / MiB, 1)} | ${f(r.seconds, 2)} | ${f(r.copySeconds, 2)} | ${f(r.records / r.copySeconds)} | ${f(r.bytes / MiB / r.copySeconds, 1)} | ${f(r.wall, 2)} | ${f(r.cpuSeconds, 1)} | ${f(r.cpuSeconds / r.records * 1000, 3)} | ${f(r.maxRssMiB)} |`)
    }
    out.push("", "run s: from connecting to the end of finalize; copy s: from the first transaction read to the last committed.")
    if (zodbCopy !== undefined) {
      const w4 = zodbRows.find((z) => z.name.endsWith("-w 4"))!.r
      out.push("", `PostgreSQL's own bulk insert of the same rows (psql \\copy of object_state, ${f(zodbCopy.rows)} rows, and transaction_log, ` +
        `into empty tables of the same shape): ${f(zodbCopy.seconds, 2)} s, ${f(zodbCopy.rows / zodbCopy.seconds)} rows/s; ` +
        `zodb-convert -w 4's copy phase took ${f(w4.copySeconds / zodbCopy.seconds, 2)}x as long for the same rows (its time includes reading and decoding the source).`)
    }
  }
  if (putSpread.length > 0) {
    out.push("", "Raw PUT rate before and after each case's lo-migrate run (the load on the machine moves it):", "")
    for (const n of putSpread) out.push(`- ${n}`)
  }
  for (const n of notes) out.push(n)
  process.stdout.write(out.join("\n") + "\n")
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`)
  process.exit(1)
})
