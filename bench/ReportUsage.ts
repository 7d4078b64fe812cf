/**
 * Preloaded into the lo-migrate process under test (`node --import bench/ReportUsage.ts dist/cli/bin.js …`):
 * at exit it writes that process's own resource usage (CPU µs, peak RSS KiB) as JSON to the file named
 * by LO_MIGRATE_BENCH_USAGE, so the figures are lo-migrate's alone, not the bench's or the servers'.
 * When the process runs with `--expose-gc` it also forces a full collection at exit and adds the heap
 * still in use after it (`heapAfterGc`, bytes): what the run kept, as opposed to the garbage V8 let
 * pile up (peak RSS).
 */
import { writeFileSync } from "node:fs"

const target = process.env.LO_MIGRATE_BENCH_USAGE
if (target !== undefined && target !== "") {
  process.on("exit", () => {
    const usage: Record<string, unknown> = { ...process.resourceUsage() }
    const gc = (globalThis as { gc?: () => void }).gc
    if (typeof gc === "function") {
      gc()
      usage.heapAfterGc = process.memoryUsage().heapUsed
    }
    writeFileSync(target, JSON.stringify(usage))
  })
}
