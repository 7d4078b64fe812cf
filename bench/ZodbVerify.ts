/**
 * Speed of `zodb-convert --verify`: `tsx bench/ZodbVerify.ts [Data.fs]` (build dist/ first), by default
 * the bench-scale fixture (22,350 records, no blobs). A throwaway cluster, one conversion with -w 4, then
 * verify with -w 1, 2 and 4 and with a sample of 100: wall seconds, source records per second (one pass;
 * verify reads the source twice), CPU seconds and peak RSS of the process.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as Os from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as Dataset from "./Dataset.ts"
import { startPostgres } from "./Servers.ts"

const dataFs = process.argv[2] ?? fileURLToPath(new URL("../test/data/zodb/bench-scale/Data.fs", import.meta.url))
const bin = fileURLToPath(new URL("../dist/cli/zodbConvertBin.js", import.meta.url))
const usageHook = fileURLToPath(new URL("./ReportUsage.ts", import.meta.url))

const run = (args: ReadonlyArray<string>, usageFile: string) =>
  new Promise<{ code: number | null; stdout: string; stderr: string; wall: number }>((resolve) => {
    const t0 = process.hrtime.bigint()
    const child = spawn(process.execPath, ["--import", usageHook, bin, ...args], {
      env: { ...process.env, LO_MIGRATE_BENCH_USAGE: usageFile, LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d))
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d))
    child.on("close", (code) => resolve({ code, stdout, stderr, wall: Number(process.hrtime.bigint() - t0) / 1e9 }))
  })

const pg = await startPostgres()
const dir = mkdtempSync(join(Os.tmpdir(), "lo-migrate-bench-verify-"))
try {
  const url = await Dataset.createDatabase(pg.server, "bench_zodb_verify", { nice2: false })
  const config = join(dir, "convert.conf")
  writeFileSync(config, `<filestorage source>\n  path ${dataFs}\n</filestorage>\n<pgjsonb destination>\n  dsn ${url}\n</pgjsonb>\n`)
  const usage = join(dir, "usage.json")
  const copy = await run([config, "-w", "4", "--progress", "plain", "--interval", "3600"], usage)
  if (copy.code !== 0) throw new Error(`zodb-convert exited ${copy.code}: ${copy.stderr.slice(-2000)}`)
  console.log(`copy -w 4: ${copy.wall.toFixed(2)} s wall`)
  for (const args of [["-w", "1"], ["-w", "2"], ["-w", "4"], ["-w", "4", "--sample", "100"]]) {
    const r = await run([config, "--verify", ...args], usage)
    if (r.code !== 0) throw new Error(`verify ${args.join(" ")} exited ${r.code}: ${r.stderr.slice(-2000)}`)
    const report = JSON.parse(r.stdout) as { records: number; seconds: number; checked: number }
    const u = JSON.parse(readFileSync(usage, "utf8")) as NodeJS.ResourceUsage
    console.log(
      `verify ${args.join(" ")}: ${report.seconds.toFixed(2)} s (wall ${r.wall.toFixed(2)} s), ` +
        `${Math.round(report.records / report.seconds).toLocaleString("en")} records/s, ${report.checked} rows checked, ` +
        `CPU ${((u.userCPUTime + u.systemCPUTime) / 1e6).toFixed(1)} s, peak RSS ${(u.maxRSS / 1024).toFixed(0)} MiB`
    )
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
  await pg.stop()
}
