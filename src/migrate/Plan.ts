/**
 * `lo-migrate plan` (and `migrate --dry-run`): what a migration would do, read without writing anything
 * to PostgreSQL or S3. Counts and sizes come from the table; the duration estimate comes from reading a
 * small sample of the objects to migrate and timing it.
 */
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { performance } from "node:perf_hooks"
import type { SqlClient } from "effect/sql"
import { DatabaseError, type MissingGrant, type SchemaMismatch } from "../domain/Errors.ts"
import type { Candidate } from "../domain/LargeObject.ts"
import { formatBytes, formatDuration } from "../pipeline/Monitor.ts"
import type { TaskState, Watch } from "../pipeline/TaskProgress.ts"
import * as LargeObjects from "../postgres/LargeObjects.ts"
import { type Inventory, PlanSource } from "../phases/PlanSource.ts"

const KiB = 1024
const MiB = 1024 * KiB
const GiB = 1024 * MiB

/**
 * Histogram bounds (inclusive, bytes). 1 MiB and 20 MiB are migrate's defaults for --in-mem-max (above:
 * staged in a temp file) and --upload-chunk-size (above: multipart upload).
 */
export const sizeBounds: ReadonlyArray<number> = [0, KiB, 16 * KiB, 256 * KiB, MiB, 20 * MiB, 256 * MiB, GiB]

/** Where the sampling stands: the objects picked (its total, known before the first read) and those read. */
export interface SampleProgress {
  objects: number
  bytes: number
  /** objects sampled so far, read or found gone */
  done: number
  doneBytes: number
  complete: boolean
  /** the estimate, once the sampling is done (undefined: none could be made) */
  estimatedSeconds: number | undefined
}

export const makeSampleProgress = (): SampleProgress => ({
  objects: 0,
  bytes: 0,
  done: 0,
  doneBytes: 0,
  complete: false,
  estimatedSeconds: undefined
})

/** The sampling's progress: objects read of those picked, and their recorded bytes. */
export const sampleState = (p: SampleProgress): TaskState => ({
  done: p.done,
  bytes: p.doneBytes,
  total: p.objects,
  totalBytes: p.bytes,
  complete: p.complete,
  detail: "sampled for the duration estimate",
  fields: { estimatedSeconds: p.estimatedSeconds ?? null }
})

export interface PlanOptions {
  /** objects to read for the estimate */
  readonly sample: number
  /** stop sampling once this many bytes were read; larger objects are not sampled */
  readonly sampleBytes: number
  /** parallel readers assumed for the estimate (migrate's --receiver-threads) */
  readonly receiverThreads: number
  /** runs the sampling, the long part, with its progress shown (TaskProgress) */
  readonly watch?: Watch | undefined
}

export interface Estimate {
  readonly objects: number
  readonly bytes: number
  readonly seconds: number
  /** per object and per byte, fitted to the sample */
  readonly perObject: number
  readonly perByte: number
  /** for the rows to migrate, with `receiverThreads` readers */
  readonly estimatedSeconds: number
}

export interface Plan {
  readonly table: string
  readonly inventory: Inventory
  readonly estimate: Estimate | undefined
  readonly options: PlanOptions
}

/**
 * Fits `time = perObject + perByte * size` by least squares; falls back to a pure rate when the sample
 * cannot separate the two (all sizes equal) or a coefficient comes out negative.
 */
export const fit = (samples: ReadonlyArray<{ readonly size: number; readonly seconds: number }>) => {
  const n = samples.length
  const totalSeconds = samples.reduce((s, x) => s + x.seconds, 0)
  const totalBytes = samples.reduce((s, x) => s + x.size, 0)
  const byRate = totalBytes > 0 ? { perObject: 0, perByte: totalSeconds / totalBytes } : { perObject: totalSeconds / n, perByte: 0 }
  const meanSize = totalBytes / n
  const meanSeconds = totalSeconds / n
  const varSize = samples.reduce((s, x) => s + (x.size - meanSize) ** 2, 0)
  if (n < 3 || varSize === 0) return n === 0 ? { perObject: 0, perByte: 0 } : byRate
  const perByte = samples.reduce((s, x) => s + (x.size - meanSize) * (x.seconds - meanSeconds), 0) / varSize
  const perObject = meanSeconds - perByte * meanSize
  if (perByte < 0) return { perObject: meanSeconds, perByte: 0 }
  if (perObject < 0) return byRate
  return { perObject, perByte }
}

/** The candidates read: within `sampleBytes` by their recorded sizes, in order; a larger one is passed over. */
const pick = (candidates: ReadonlyArray<Candidate>, sampleBytes: number): ReadonlyArray<Candidate & { readonly oid: number }> => {
  let bytes = 0
  const picked: Array<Candidate & { readonly oid: number }> = []
  for (const c of candidates) {
    if (c.oid === null || c.size > sampleBytes - bytes) continue
    picked.push(c as Candidate & { readonly oid: number })
    bytes += c.size
  }
  return picked
}

/** Reads and hashes the picked objects, timing each, and fits the estimate. */
const measure = (
  options: PlanOptions,
  inventory: Inventory,
  picked: ReadonlyArray<Candidate & { readonly oid: number }>,
  progress: SampleProgress
) =>
  Effect.gen(function*() {
    const samples: Array<{ size: number; seconds: number }> = []
    let bytes = 0
    for (const c of picked) {
      const oid = c.oid
      const started = performance.now()
      const hash = createHash("sha256")
      // the receivers' work: read in chunks and hash (one connection, sequential)
      const size = yield* LargeObjects.read(oid, (chunk) => Effect.sync(() => void hash.update(chunk))).pipe(
        Effect.map(Option.some),
        Effect.catchTag("SqlError", (error) =>
          LargeObjects.sqlState(error) === LargeObjects.undefinedObject
            ? Effect.succeed(Option.none<number>())
            : Effect.fail(new DatabaseError({ operation: `read large object ${oid}`, cause: error })))
      )
      hash.digest()
      progress.done += 1
      // the recorded size, as the total counts it (a vanished object counts as sampled)
      progress.doneBytes += c.size
      if (Option.isNone(size)) continue
      samples.push({ size: size.value, seconds: (performance.now() - started) / 1000 })
      bytes += size.value
    }
    progress.complete = true
    if (samples.length === 0) return undefined
    const { perObject, perByte } = fit(samples)
    const estimate: Estimate = {
      objects: samples.length,
      bytes,
      seconds: samples.reduce((s, x) => s + x.seconds, 0),
      perObject,
      perByte,
      estimatedSeconds: (perObject * inventory.remaining + perByte * Number(inventory.remainingBytes)) /
        Math.max(1, options.receiverThreads)
    }
    progress.estimatedSeconds = estimate.estimatedSeconds
    return estimate
  })

export const make = (
  options: PlanOptions
): Effect.Effect<Plan, SchemaMismatch | MissingGrant | DatabaseError, PlanSource | SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const source = yield* PlanSource
    const inventory = yield* source.inventory(sizeBounds)
    // the objects to read are picked before the first is read: the progress starts with its total
    const picked = inventory.remaining === 0 || options.sample <= 0
      ? []
      : pick(yield* source.sample(options.sample), options.sampleBytes)
    const progress = makeSampleProgress()
    progress.objects = picked.length
    progress.bytes = picked.reduce((s, c) => s + c.size, 0)
    const sampling = measure(options, inventory, picked, progress)
    const estimate = yield* (options.watch === undefined ? sampling : options.watch(Effect.sync(() => sampleState(progress)), sampling))
    return { table: source.table, inventory, estimate, options }
  })

const exactBytes = (n: bigint) => `${n} bytes (${formatBytes(Number(n))})`

const boundLabel = (upTo: number | undefined, previous: number | undefined) =>
  upTo === undefined
    ? `> ${formatBytes(previous ?? 0)}`
    : upTo === 0
    ? "0 B"
    : `<= ${formatBytes(upTo)}`

const examples = (items: ReadonlyArray<string>, count: number) =>
  items.length === 0 ? "" : ` (e.g. ${items.join(", ")}${count > items.length ? ", ..." : ""})`

/** The plan as text for stdout. */
export const format = (plan: Plan, extraNotes: ReadonlyArray<string> = []): string => {
  const inv = plan.inventory
  const lines: Array<string> = []
  const width = Math.max(String(inv.total).length, 1)
  lines.push(`plan for ${plan.table} (read only: nothing was written to PostgreSQL or S3)`, "")
  lines.push("objects")
  lines.push(`  to migrate:       ${String(inv.remaining).padStart(width)}  ${exactBytes(inv.remainingBytes)}`)
  lines.push(`  already migrated: ${String(inv.migrated).padStart(width)}  ${exactBytes(inv.migratedBytes)}`)
  lines.push(`  total:            ${String(inv.total).padStart(width)}  ${exactBytes(inv.totalBytes)}`)
  lines.push("", "sizes of the objects to migrate")
  const most = Math.max(1, ...inv.histogram.map((b) => b.objects))
  inv.histogram.forEach((b, i) => {
    const label = boundLabel(b.upTo, inv.histogram[i - 1]?.upTo).padEnd(13)
    const bar = "#".repeat(b.objects === 0 ? 0 : Math.max(1, Math.round((b.objects / most) * 30)))
    lines.push(`  ${label} ${String(b.objects).padStart(width)}  ${`${b.bytes} bytes`.padEnd(22)} ${bar}`)
  })
  if (inv.unknownSize > 0) lines.push(`  ${"size NULL".padEnd(13)} ${String(inv.unknownSize).padStart(width)}`)
  lines.push("", "problems in the rows to migrate (migrate skips and names these rows)")
  lines.push(`  NULL data:      ${inv.nullData.count}${examples(inv.nullData.examples, inv.nullData.count)}`)
  lines.push(
    `  dangling oids:  ${inv.dangling.count}${
      examples(inv.dangling.examples.map((d) => `${d.key} -> oid ${d.oid}`), inv.dangling.count)
    }`
  )
  lines.push(`  malformed keys: ${inv.malformedKeys.count}${examples(inv.malformedKeys.examples.map((k) => JSON.stringify(k)), inv.malformedKeys.count)}`)
  lines.push(
    `  oids shared by several rows (whole table): ${inv.sharedOids.oids} oid(s) in ${inv.sharedOids.rows} row(s)${
      examples(inv.sharedOids.examples.map((s) => `oid ${s.oid}: ${s.keys.join(" ")}`), inv.sharedOids.oids)
    }`
  )
  const notes = [...inv.notes, ...extraNotes]
  if (notes.length > 0) {
    lines.push("", "notes")
    for (const note of notes) lines.push(`  - ${note}`)
  }
  lines.push("", "estimated duration")
  const e = plan.estimate
  if (inv.remaining === 0) {
    lines.push("  nothing to migrate")
  } else if (e === undefined) {
    lines.push("  unknown: no object could be sampled (see --sample and --sample-mib)")
  } else {
    lines.push(
      `  about ${formatDuration(e.estimatedSeconds)} (${e.estimatedSeconds.toFixed(1)} s) to read ${inv.remaining} object(s), ` +
        `${formatBytes(Number(inv.remainingBytes))}, with ${plan.options.receiverThreads} parallel reader(s) (--receiver-threads)`
    )
    lines.push(
      `  based on: ${e.objects} sampled object(s), ${e.bytes} bytes, read and hashed in ${e.seconds.toFixed(3)} s ` +
        `on one connection; fitted cost ${(e.perObject * 1000).toFixed(2)} ms per object + ` +
        `${e.perByte > 0 ? `${formatBytes(1 / e.perByte)}/s` : "no measurable per-byte cost"}`
    )
    lines.push(
      "  assumes PostgreSQL reads are the bottleneck; S3 upload speed is not measured (plan writes nothing), " +
        "so a slower S3 makes the run longer"
    )
  }
  return `${lines.join("\n")}\n`
}
