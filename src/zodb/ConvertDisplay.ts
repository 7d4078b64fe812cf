/**
 * How a conversion shows its progress, read from the one ConvertProgress object: a plain line for
 * logs, a line redrawn in place on a terminal, or one JSON object per line on stdout.
 */
import type { ConvertProgress } from "./ZodbConvert.ts"
import { describeFailure } from "./ZodbConvert.ts"
import { hex } from "./sources/ZodbSource.ts"

const mib = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1)

const rate = (n: number, seconds: number) => (seconds <= 0 ? 0 : n / seconds)

/** done of total, the rates since the start and the ETA by transactions */
export const numbers = (p: ConvertProgress) => {
  const seconds = Math.max(0.001, (p.at - p.startedAt) / 1000)
  const total = p.total?.transactions
  const done = p.committed + p.skipped
  const txPerSecond = rate(p.committed, seconds)
  const left = total === undefined ? undefined : Math.max(0, total - done - p.failed.length)
  return {
    seconds,
    done,
    total,
    percent: total === undefined || total === 0 ? undefined : Math.min(100, (100 * done) / total),
    transactionsPerSecond: txPerSecond,
    recordsPerSecond: rate(p.records, seconds),
    mibPerSecond: rate(p.bytes, seconds) / (1024 * 1024),
    etaSeconds: left === undefined || txPerSecond === 0 ? undefined : left / txPerSecond
  }
}

export const line = (p: ConvertProgress): string => {
  const n = numbers(p)
  const of = n.total === undefined ? "" : ` of ${n.total}${n.percent === undefined ? "" : ` (${n.percent.toFixed(1)}%)`}`
  return `zodb-convert: ${n.done}${of} transactions, ${p.records} records, ${mib(p.bytes)} MiB, ` +
    `${p.blobs} blobs (${p.blobsToS3} to S3, ${mib(p.blobBytes)} MiB) | ` +
    `${n.transactionsPerSecond.toFixed(0)} tx/s, ${n.recordsPerSecond.toFixed(0)} records/s, ${n.mibPerSecond.toFixed(1)} MiB/s | ` +
    `queues ${p.queues.decode}/${p.queues.blobs}/${p.queues.write} of ${p.queues.capacity}` +
    `${p.failed.length > 0 ? ` | ${p.failed.length} failed` : ""}` +
    `${n.etaSeconds === undefined ? "" : ` | ETA ${Math.ceil(n.etaSeconds)} s`}`
}

export const json = (p: ConvertProgress, type: "progress" | "summary"): string => {
  const n = numbers(p)
  return JSON.stringify({
    type,
    at: new Date(p.at).toISOString(),
    transactions: { done: n.done, committed: p.committed, skipped: p.skipped, total: n.total ?? null, failed: p.failed.length },
    records: p.records,
    bytes: p.bytes,
    blobs: { count: p.blobs, toS3: p.blobsToS3, bytes: p.blobBytes },
    deletions: p.deletions,
    percent: n.percent ?? null,
    rates: { transactionsPerSecond: n.transactionsPerSecond, recordsPerSecond: n.recordsPerSecond, mibPerSecond: n.mibPerSecond },
    etaSeconds: n.etaSeconds ?? null,
    queues: p.queues,
    watermark: p.watermark === undefined ? null : hex(p.watermark),
    copySeconds: p.copyStartedAt === undefined || p.copyEndedAt === undefined ? null : (p.copyEndedAt - p.copyStartedAt) / 1000,
    ...(type === "summary"
      ? {
        stopped: p.stopped,
        finalized: p.finalized,
        failures: p.failed.map((f) => ({ tid: hex(f.tid), zoid: f.zoid === undefined ? null : hex(f.zoid), offset: f.offset ?? null, problem: f.problem })),
        losses: p.losses.map((l) => ({ tid: hex(l.tid), zoid: hex(l.zoid), reasons: l.losses.map((x) => ({ reason: x.reason, repaired: x.repaired, detail: x.detail })) }))
      }
      : {})
  }) + "\n"
}

/** The closing lines: what was copied, each codec loss and each failure by tid and zoid. */
export const summary = (p: ConvertProgress): ReadonlyArray<string> => {
  const n = numbers(p)
  const lines = [
    `zodb-convert: ${p.stopped ? "stopped" : p.failed.length > 0 ? "finished with failures" : "done"}: ` +
    `${p.committed} transactions and ${p.records} records copied, ${p.skipped} already there, ${p.deletions} deletions, ` +
    `${p.blobs} blobs (${p.blobsToS3} to S3), in ${n.seconds.toFixed(1)} s (${n.recordsPerSecond.toFixed(0)} records/s)` +
    `${p.watermark === undefined ? "" : `; watermark ${hex(p.watermark)}`}${p.finalized ? "; destination finalized" : ""}`
  ]
  const unrepaired = p.losses.filter((l) => l.losses.some((x) => !x.repaired))
  if (p.losses.length > 0) {
    lines.push(`zodb-convert: ${p.losses.length} record(s) whose codec JSON loses information, ${p.losses.length - unrepaired.length} written in a form the loader reverses (docs/zodb-codec.md):`)
    for (const l of p.losses.slice(0, 50)) {
      lines.push(`  LOSS tid ${hex(l.tid)} zoid ${hex(l.zoid)}: ${l.losses.map((x) => `${x.reason}${x.repaired ? " (repaired)" : ""}`).join(", ")}`)
    }
    if (p.losses.length > 50) lines.push(`  … and ${p.losses.length - 50} more (--progress json lists them all)`)
  }
  for (const f of p.failed) lines.push(`  FAILED ${describeFailure(f)}`)
  return lines
}
