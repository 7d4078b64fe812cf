/**
 * Preloaded into the lo-migrate process under test (`node --import bench/ReportUsage.ts dist/cli/bin.js …`):
 * at exit it writes that process's own resource usage (CPU µs, peak RSS KiB) as JSON to the file named
 * by LO_MIGRATE_BENCH_USAGE, so the figures are lo-migrate's alone, not the bench's or the servers'.
 */
import { writeFileSync } from "node:fs"

const target = process.env.LO_MIGRATE_BENCH_USAGE
if (target !== undefined && target !== "") {
  process.on("exit", () => {
    writeFileSync(target, JSON.stringify(process.resourceUsage()))
  })
}
