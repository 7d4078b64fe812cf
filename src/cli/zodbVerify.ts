/**
 * `zodb-convert --verify CONFIG`: the destination compared with the source, read-only
 * (src/zodb/ZodbVerify.ts). The JSON report goes to `--report FILE`, or to stdout without it (with
 * `--progress json`: as the `report` of the last event, the summary); a summary and the first
 * differences go to stderr. Exit 0: no difference; 1: differences (named in the
 * report); 2: a setup problem (config, an unreachable server, a destination that is not zodb-pgjsonb's).
 */
import { Effect, Option } from "effect"
import { Flag } from "effect/cli"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import { writeStderr, writeStdout } from "../core/Output.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { SettingsError } from "../domain/Errors.ts"
import type { TaskState } from "../pipeline/TaskProgress.ts"
import * as ConvertConfig from "../zodb/ConvertConfig.ts"
import type { CodecMode } from "../zodb/codec/RecordCodec.ts"
import * as ZodbConnections from "../zodb/ZodbConnections.ts"
import * as ZodbVerify from "../zodb/ZodbVerify.ts"
import * as ProgressMode from "./ProgressMode.ts"

/** The flags `zodb-convert` adds for verification (spread into its own). */
export const verifyFlags = {
  verify: Flag.Boolean("verify").pipe(
    Flag.withDescription(
      "compare the destination with the source instead of copying (read-only): counts, every object_state " +
        "(and object_history) row re-derived, transaction_log, every blob's size and SHA-256; exit 0/1/2"
    ),
    Flag.withDefault(false)
  ),
  sample: Flag.Int("sample").pipe(
    Flag.withDescription("--verify: compare the state of only N random objects (every key and count still); the report names the seed"),
    Flag.optional
  ),
  seed: Flag.Int("seed").pipe(Flag.withDescription("--verify --sample: the seed of the sample (from an earlier report, to draw it again)"), Flag.optional),
  deep: Flag.Boolean("deep").pipe(
    Flag.withDescription("--verify: read every S3 blob and hash it (otherwise HEAD: size and sha256 metadata)"),
    Flag.withDefault(false)
  ),
  report: Flag.String("report").pipe(Flag.withDescription("--verify: write the JSON report to this file (default: stdout)"), Flag.optional)
}

/** What verification reads of zodb-convert's flags. */
export interface VerifyCommandFlags {
  readonly config: Option.Option<string>
  readonly sourceZopeConf: Option.Option<string>
  readonly sourceDb: Option.Option<string>
  readonly destZopeConf: Option.Option<string>
  readonly destDb: Option.Option<string>
  readonly workers: number
  readonly codecForm: CodecMode
  readonly interval: number
  readonly progress: ProgressMode.ProgressMode
  readonly retries: number
  readonly sample: Option.Option<number>
  readonly seed: Option.Option<number>
  readonly deep: boolean
  readonly report: Option.Option<string>
}

const phaseText = {
  index: "pass 1 of 2 (transactions and blobs)",
  states: "pass 2 of 2 (object states)",
  extras: "rows the source lacks"
} as const

/**
 * Both passes read every transaction of the source: the progress counts transactions read of twice the
 * source's (unknown until the background count of the first pass ends).
 */
export const verifyState = (p: ZodbVerify.VerifyProgress | undefined, complete: boolean): TaskState => {
  const perPass = p?.sourceTransactions
  const done = p === undefined ? 0 : p.phase === "index" ? p.transactions : p.phase === "states" ? (perPass ?? 0) + p.transactions : 2 * (perPass ?? 0)
  return {
    done,
    total: perPass === undefined ? undefined : 2 * perPass,
    complete,
    failed: p?.differences ?? 0,
    detail: p === undefined
      ? "starting"
      : `${phaseText[p.phase]}: ${p.records} records, ${p.blobs} blobs, ${p.differences} difference(s)`,
    fields: {
      phase: p?.phase ?? null,
      sourceTransactions: perPass ?? null,
      records: p?.records ?? 0,
      blobs: p?.blobs ?? 0,
      differences: p?.differences ?? 0
    }
  }
}

export const verifyCommand = Effect.fn("zodb-convert --verify")(function*(f: VerifyCommandFlags) {
  if (f.workers < 1) return yield* new SettingsError({ setting: "--workers", problem: "must be at least 1" })
  if (f.interval < 1) return yield* new SettingsError({ setting: "--interval", problem: "must be at least 1" })
  if (Option.isSome(f.sample) && f.sample.value < 0) return yield* new SettingsError({ setting: "--sample", problem: "must be 0 or more" })
  const config = yield* ConvertConfig.load({
    configFile: Option.getOrUndefined(f.config),
    sourceZopeConf: Option.getOrUndefined(f.sourceZopeConf),
    sourceDb: Option.getOrUndefined(f.sourceDb),
    destZopeConf: Option.getOrUndefined(f.destZopeConf),
    destDb: Option.getOrUndefined(f.destDb)
  })
  const dest = config.destination
  const layers = yield* ZodbConnections.verifyLayers(config, {
    workers: f.workers,
    retries: f.retries,
    tempDir: NodeOs.tmpdir(),
    env: process.env
  })
  yield* writeStderr(
    `zodb-convert --verify: ${config.source.kind === "filestorage" ? `FileStorage ${config.source.path}` : "RelStorage"} against zodb-pgjsonb ` +
      `(${dest.historyPreserving ? "history-preserving" : "history-free"}${dest.s3 === undefined ? "" : `, S3 s3://${dest.s3.bucket}${f.deep ? " read whole" : " by HEAD"}`})` +
      `${Option.isSome(f.sample) ? `, a sample of ${f.sample.value} object states` : ""}, -w ${f.workers}\n`
  )
  let latest: ZodbVerify.VerifyProgress | undefined
  let finished: ZodbVerify.VerifyReport | undefined
  // --progress json: stdout carries JSON lines only; without --report the report is the summary's `report`
  const reportInSummary = ProgressMode.resolve(f.progress, process.stderr.isTTY === true) === "json" && Option.isNone(f.report)
  const task = ProgressMode.task(f.progress, { task: "verify", unit: "transactions", interval: `${f.interval} seconds` })
  const report = yield* task.watch(
    Effect.sync((): TaskState => {
      const state = verifyState(latest, finished !== undefined)
      return reportInSummary && finished !== undefined ? { ...state, fields: { ...state.fields, report: finished } } : state
    }),
    ZodbVerify.run({
      historyPreserving: dest.historyPreserving,
      s3Prefix: dest.s3?.prefix,
      sample: Option.getOrUndefined(f.sample),
      seed: Option.getOrUndefined(f.seed),
      deep: f.deep,
      mode: f.codecForm,
      concurrency: f.workers,
      retry: defaultPolicy(f.retries),
      onProgress: (p) => Effect.sync(() => void (latest = p))
    }).pipe(
      Effect.provide(ZodbConnections.allForVerify(layers)),
      Effect.scoped,
      Effect.tap((r) => Effect.sync(() => void (finished = r)))
    )
  )

  const text = JSON.stringify(report, null, 2) + "\n"
  if (Option.isSome(f.report)) {
    const path = f.report.value
    yield* Effect.try({
      try: () => NodeFs.writeFileSync(path, text),
      catch: (cause) => new SettingsError({ setting: "--report", problem: `cannot write ${path}: ${String(cause)}` })
    })
  } else if (!reportInSummary) yield* writeStdout(text)

  for (const d of report.differences.slice(0, 50)) {
    yield* writeStderr(`DIFF ${d.table}${d.zoid === undefined ? "" : ` oid ${d.zoid}`}${d.tid === undefined ? "" : ` tid ${d.tid}`}: ${d.problem}\n`)
  }
  if (report.differences.length > 50) yield* writeStderr(`… ${report.differences.length - 50} more in the report\n`)
  const counts = Object.entries(report.counts).map(([t, c]) => `${t} ${c.destination}${c.destination === c.source ? "" : ` (source ${c.source})`}`)
  yield* writeStderr(
    `verified ${report.checked} row(s) in ${report.seconds.toFixed(1)} s: ${report.good} good, ${report.bad} bad; ${counts.join(", ")}` +
      `${report.sample === null ? "" : `; states of a sample of ${report.sample.size} of ${report.sample.of} objects (seed ${report.sample.seed})`}\n`
  )
  yield* ZodbVerify.outcome(report)
})
