/**
 * Read speed of the FileStorage reader: `tsx bench/FileStorageRead.ts [Data.fs] [runs]`, by default the
 * bench-scale fixture (7.6 MB, 22,350 records). Streams every transaction with its records' bytes (what a
 * converter consumes) and, separately, the dry-run `scan`; prints MB/s and records/s of the best run and
 * the peak RSS. The file is in the page cache after the first run, so this is the reader's own cost.
 */
import { Effect, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as FileStorage from "../src/zodb/sources/FileStorage.ts"

const path = process.argv[2] ?? "/work/shared/fixtures/zodb/bench-scale/Data.fs"
const runs = Number(process.argv[3] ?? 5)
const size = NodeFs.statSync(path).size

const time = async <A>(f: () => Promise<A>) => {
  const t0 = process.hrtime.bigint()
  const a = await f()
  return { a, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }
}

const stream = () =>
  Effect.runPromise(Stream.runFold(FileStorage.transactions(path), () => 0, (n: number, t) => n + t.records.length))
const scan = () => Effect.runPromise(FileStorage.scan(path)).then((s) => s.records)

for (const [name, f] of [["transactions (with bytes)", stream], ["scan (dry run)", scan]] as const) {
  let best = Infinity
  let records = 0
  for (let i = 0; i < runs; i++) {
    const { a, seconds } = await time(f)
    records = a
    best = Math.min(best, seconds)
  }
  console.log(
    `${name}: ${(size / 1048576 / best).toFixed(1)} MiB/s, ${Math.round(records / best).toLocaleString("en")} records/s ` +
      `(${records} records, ${(size / 1048576).toFixed(1)} MiB, best of ${runs}: ${(best * 1000).toFixed(0)} ms)`
  )
}
console.log(`peak RSS ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`)
