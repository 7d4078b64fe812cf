// Decode speed of the ZODB record codec (src/zodb/codec/RecordCodec.ts) over every fixture record
// (shared/fixtures/zodb: filestorage, history and the 22,350 small records of bench-scale), single
// threaded. Run: npx tsx bench/ZodbCodec.ts [seconds per mode, default 5]
import { resolve } from "node:path"
import { decodeRecord } from "../src/zodb/codec/RecordCodec.ts"
import { readFileStorage } from "../test/support/FileStorage.ts"
import { expectedRecords, zodbFixtures } from "../test/support/ZodbFixtures.ts"

const seconds = Number(process.argv[2] ?? "5")
const sets: Record<string, Array<Uint8Array>> = {
  "filestorage+history": ["filestorage", "history"].flatMap((n) =>
    expectedRecords(n).flatMap((e) => e.pickle === null ? [] : [e.pickle])
  ),
  "bench-scale": readFileStorage(resolve(zodbFixtures(), "bench-scale", "Data.fs")).flatMap((t) =>
    t.records.flatMap((r) => r.data === null ? [] : [r.data])
  )
}

for (const [name, records] of Object.entries(sets)) {
  const bytes = records.reduce((n, r) => n + r.length, 0)
  for (const mode of ["codec", "faithful"] as const) {
    for (const r of records) decodeRecord(r, { mode }) // warm up
    let n = 0
    let passes = 0
    const start = performance.now()
    while (performance.now() - start < seconds * 1000) {
      for (const r of records) decodeRecord(r, { mode })
      n += records.length
      passes++
    }
    const s = (performance.now() - start) / 1000
    console.log(
      `${name.padEnd(20)} ${mode.padEnd(8)} ${records.length} records (${(bytes / records.length).toFixed(0)} B avg): ` +
        `${Math.round(n / s).toLocaleString("en")} records/s, ${(passes * bytes / s / 1e6).toFixed(1)} MB/s`
    )
  }
}
