/**
 * `npm run bench`: lo-migrate against the limits of the servers it runs on, all in one run on the same
 * throwaway PostgreSQL cluster and s3rver process, so the ratios compare like with like.
 *
 *   LO_MIGRATE_BENCH_QUICK=1   smaller counts (about a minute), to try it out
 *   LO_MIGRATE_BENCH_ONLY=small,medium,large,mix,huge,scale,zodb,rss100k   run only these cases
 *     (zodb: zodb-convert over the fixtures' bench-scale FileStorage, against COPY of the same rows)
 *     (rss100k: 100,000 small objects with default settings, for the peak-RSS target; not in the default set)
 *   LO_MIGRATE_BENCH_NODE_ARGS="--cpu-prof"   extra Node flags for the lo-migrate process
 *
 * Prints markdown tables (pasted into BENCHMARKS.md) and the conditions they were measured under.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Os from "node:os"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { defaults } from "../src/domain/Settings.ts"
import * as Dataset from "./Dataset.ts"
import { findPgBinDir } from "../src/embedded/TempCluster.ts"
import { type EndToEnd, endToEnd, MiB, mibPerSecond, naive, perSecond, type Rate, rawPutInChild, rawRead, zodbConvert, type ZodbRun } from "./Measure.ts"
import { startPostgres, startS3rver } from "./Servers.ts"

const quick = (process.env.LO_MIGRATE_BENCH_QUICK ?? "") !== "" && process.env.LO_MIGRATE_BENCH_QUICK !== "0"
const only = (process.env.LO_MIGRATE_BENCH_ONLY ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "")
const optional = new Set(["rss100k"])
const wanted = (name: string) => (only.length === 0 && !optional.has(name)) || only.includes(name)
const KiB = 1024

// The scaling series is small objects at 1x, 4x and 16x, run back to back (16x = case (a)'s count).
const counts = quick
  ? { small: 2_000, medium: 200, large: 2, largeSize: 64 * MiB, mix: 150, huge: 256 * MiB, naiveSmall: 300, naiveMedium: 60, rawPutMax: 1_000 }
  : { small: 20_000, medium: 2_000, large: 8, largeSize: 64 * MiB, mix: 1_000, huge: 1024 * MiB, naiveSmall: 500, naiveMedium: 200, rawPutMax: 2_000 }
const scaleBase = counts.small / 16
/** `--workers` values tried on the 4x data set besides the default (5: the original's storer count) */
const sweep = [5]

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
const putSpread: Array<string> = []
const zodbRows: Array<{ name: string; r: ZodbRun }> = []
let zodbCopy: { readonly rows: number; readonly seconds: number } | undefined

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

    /** One size class: raw read, raw PUT, naive baseline (on a subset), lo-migrate end to end. */
    const sizeClass = async (name: string, label: string, specs: ReadonlyArray<Dataset.ObjectSpec>, naiveCount: number, unit: "obj" | "mib") => {
      log(`${name}: filling ${f(specs.length)} objects`)
      const url = await Dataset.createDatabase(pg.server, `bench_${name}`)
      await Dataset.insertObjects(url, specs)
      const rows = await Dataset.listRows(url, specs.length)
      log(`${name}: raw read`)
      const read = await rawRead(url, rows, receivers)
      // The raw PUT rate is taken before and after lo-migrate's run (on up to rawPutMax objects) and
      // averaged, so a change in the machine's load during the case shows and evens out.
      const putSizes = specs.slice(0, counts.rawPutMax).map((s) => s.size)
      log(`${name}: raw PUT (before)`)
      const putBefore = await rawPutInChild(s3.endpoint, bucket(`${name}-raw`), putSizes, storers)
      let base: Rate | undefined
      if (naiveCount > 0) {
        log(`${name}: naive baseline on ${naiveCount} objects`)
        base = await naive(url, s3.endpoint, bucket(`${name}-naive`), rows.slice(0, naiveCount))
        await Dataset.resetMarks(url)
      }
      log(`${name}: lo-migrate`)
      const e2e = await endToEnd(url, s3.endpoint, bucket(name))
      e2eLine(label, e2e)
      log(`${name}: raw PUT (after)`)
      const putAfter = await rawPutInChild(s3.endpoint, bucket(`${name}-raw`), putSizes, storers)
      const put: Rate = {
        objects: putBefore.objects + putAfter.objects,
        bytes: putBefore.bytes + putAfter.bytes,
        seconds: putBefore.seconds + putAfter.seconds
      }
      const rate = (r: Rate) => unit === "obj" ? perSecond(r) : mibPerSecond(r)
      putSpread.push(`${label}: raw PUT ${f(rate(putBefore))} before, ${f(rate(putAfter))} after lo-migrate's run`)
      const limit = Math.min(rate(read.best), rate(put))
      results.push({
        case: label,
        cells: [
          unit === "obj" ? "objects/s" : "MiB/s",
          f(rate(read.best)) + (read.batched === undefined ? "" : read.best === read.batched ? " (batched)" : " (single)"),
          f(rate(put)),
          base === undefined ? "n/a" : f(rate(base), 1),
          f(rate(e2e)),
          f(rate(e2e) / limit, 2),
          f(rate(e2e) / rate(put), 2),
          base === undefined ? "n/a" : f(rate(e2e) / rate(base), 1),
          // what even a tool at the raw PUT rate could reach against the naive loop
          base === undefined ? "n/a" : f(Math.min(rate(read.best), rate(put)) / rate(base), 1)
        ]
      })
    }

    if (wanted("small")) {
      await sizeClass("small", `(a) ${f(counts.small)} x 4 KiB`, Dataset.uniform("s", counts.small, 4 * KiB), counts.naiveSmall, "obj")
    }
    if (wanted("medium")) {
      await sizeClass("medium", `(b) ${f(counts.medium)} x 64 KiB`, Dataset.uniform("m", counts.medium, 64 * KiB), counts.naiveMedium, "obj")
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
      log(`huge: filling one ${counts.huge / MiB} MiB object`)
      const url = await Dataset.createDatabase(pg.server, "bench_huge")
      await Dataset.insertObjects(url, [{ seed: "huge", size: counts.huge, mime: "application/octet-stream" }])
      log("huge: lo-migrate")
      e2eLine(`one ${f(counts.huge / MiB)} MiB object`, await endToEnd(url, s3.endpoint, bucket("huge")))
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
        e2eLine(`scaling ${factor}x: ${f(want)} x 4 KiB`, await endToEnd(url, s3.endpoint, bucket("scale")))
        if (factor === 4) {
          for (const workers of sweep) {
            await Dataset.resetMarks(url)
            log(`workers ${workers}: lo-migrate`)
            e2eLine(`--workers ${workers}: ${f(have)} x 4 KiB`, await endToEnd(url, s3.endpoint, bucket("workers"), ["--workers", String(workers)]))
          }
        }
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
  const out: Array<string> = []
  out.push(`## Conditions`, "")
  out.push(`- mode: ${quick ? "quick (LO_MIGRATE_BENCH_QUICK=1)" : "full"}; date ${new Date().toISOString()}; bench took ${f((Date.now() - started) / 1000)} s`)
  out.push(`- machine: ${cpu.length} x ${cpu[0]?.model ?? "?"}, ${f(Os.totalmem() / 1024 ** 3)} GiB RAM, ${Os.type()} ${Os.release()}`)
  out.push(`- load average (1 min) before/after: ${f(loadBefore[0]!, 2)} / ${f(loadAfter[0]!, 2)}`)
  out.push(`- Node ${process.version}; PostgreSQL ${pgVersion} (throwaway cluster, fsync off, shared_buffers 128MB); s3rver ${s3rverVersion} in its own process`)
  out.push(`- lo-migrate default settings: ${receivers} receivers, ${storers} storers, ${defaults.committerThreads} committers; raw reads at ${receivers} connections, raw PUTs at ${storers} in flight`)
  out.push("", "## Against the limits", "")
  out.push("| case | unit | raw read | raw PUT | naive | lo-migrate | / min(read, PUT) | / raw PUT | / naive | ceiling vs naive |")
  out.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  for (const r of results) out.push(`| ${r.case} | ${r.cells.join(" | ")} |`)
  out.push("", "## lo-migrate end to end (child process, default settings)", "")
  out.push("| run | objects | MiB | seconds | objects/s | MiB/s | CPU s | CPU s / 1,000 obj | CPU s / GiB | peak RSS MiB |")
  out.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
  for (const { name, r } of e2eRows) {
    out.push(`| ${name} | ${f(r.objects)} | ${f(r.bytes / MiB)} | ${f(r.seconds, 1)} | ${f(perSecond(r))} | ${f(mibPerSecond(r), 1)} | ${f(r.cpuSeconds, 1)} | ${f(r.cpuSeconds / r.objects * 1000, 2)} | ${f(r.cpuSeconds / (r.bytes / 1024 ** 3), 1)} | ${f(r.maxRssMiB)} |`)
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
  out.push("", "Raw PUT rate before and after each case's lo-migrate run (the load on the machine moves it):", "")
  for (const n of putSpread) out.push(`- ${n}`)
  for (const n of notes) out.push(n)
  process.stdout.write(out.join("\n") + "\n")
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`)
  process.exit(1)
})
