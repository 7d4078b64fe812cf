/**
 * `lo-migrate prune --yes`: removes the large objects of migrated rows whose S3 copy verifies, in small
 * transactions, and sets their `data` to NULL. Without `--yes` it only says what it would do.
 */
import { Effect, Exit } from "effect"
import { Command, Flag } from "effect/cli"
import * as Connections from "../migrate/Connections.ts"
import { SettingsError, VerificationFailed } from "../domain/Errors.ts"
import { bytesOfOid, describeBad, describeLevel, describeOids, type MigratedRow, oidsOf } from "../domain/MigratedObject.ts"
import { formatBytes } from "../pipeline/Monitor.ts"
import type { TaskState } from "../pipeline/TaskProgress.ts"
import { writeStderr } from "../core/Output.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { AfterCopy } from "../phases/AfterCopy.ts"
import { ObjectStore } from "../s3/ObjectStore.ts"
import * as Verification from "../migrate/Verification.ts"
import { atLeast, settingsOf } from "./Connect.ts"
import * as ProgressMode from "./ProgressMode.ts"
import { profileFlags } from "./ProfileFlags.ts"
import { againstSource, concurrency, connectionFlags, count, deep, int, interval, retries } from "./Flags.ts"
import { badEvent, levelOf } from "./verify.ts"

/** Rows not migrated that are named in the output; the rest are counted. */
export const listedUnmigrated = 1000

interface Totals {
  released: number
  changed: number
  unlinked: number
  freedBytes: number
  kept: number
  absent: number
}

const chunks = <A>(items: ReadonlyArray<A>, size: number): ReadonlyArray<ReadonlyArray<A>> =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size))

export const prune = Command.make("prune", {
  ...connectionFlags,
  ...profileFlags,
  yes: Flag.Boolean("yes").pipe(
    Flag.withDescription("really unlink the large objects; without it prune only prints what it would do"),
    Flag.withDefault(false)
  ),
  createChunkIndex: Flag.Boolean("create-chunk-index").pipe(
    Flag.withDescription(
      "relstorage profile: when blob_chunk has no index on (chunk), create it first (CREATE INDEX CONCURRENTLY " +
        "blob_chunk_chunk_idx ON blob_chunk (chunk); needs the table's owner) instead of refusing: RelStorage's delete trigger " +
        "scans blob_chunk once per deleted row without it, and RelStorage 3.0 and later do not create it"
    ),
    Flag.withDefault(false)
  ),
  batchSize: int("batch-size", "large objects unlinked per transaction (many in one transaction exhaust PostgreSQL's lock table)", 100),
  deep,
  againstSource,
  concurrency,
  count,
  progress: ProgressMode.flag,
  interval,
  retries
}, Effect.fn("prune")(function*(flags) {
  const settings = yield* settingsOf(flags)
  if (flags.createChunkIndex && settings.profile._tag !== "relstorage") {
    return yield* new SettingsError({ setting: "--create-chunk-index", problem: "is only used with --profile relstorage" })
  }
  const parallel = yield* atLeast("--concurrency", flags.concurrency, 1)
  const batchSize = yield* atLeast("--batch-size", flags.batchSize, 1)
  yield* atLeast("--interval", flags.interval, 1)
  const level = levelOf(flags)
  const apply = flags.yes
  const progress = Verification.makeProgress(level, undefined)
  const totals: Totals = { released: 0, changed: 0, unlinked: 0, freedBytes: 0, kept: 0, absent: 0 }
  // dry run: rows it would have released that share their large object with other rows, so that a later
  // page sees those references as gone, as the real run would
  const wouldRelease = new Set<string>()
  let notMigrated: number | undefined
  const task = ProgressMode.task(flags.progress, { task: "prune", unit: "objects", interval: `${flags.interval} seconds` })
  // rows checked of the rows counted, and what was released so far
  const state = Effect.sync((): TaskState => {
    const checked = Verification.taskState(progress, "refused")
    return {
      ...checked,
      detail: `${apply ? "" : "dry run: "}${totals.released} row(s) ${apply ? "released" : "would be released"}, ` +
        `${formatBytes(totals.freedBytes)} ${apply ? "freed" : "would be freed"}, ${checked.detail}`,
      fields: {
        ...checked.fields,
        dryRun: !apply,
        released: totals.released,
        unlinked: totals.unlinked,
        freedBytes: totals.freedBytes,
        kept: totals.kept,
        absent: totals.absent,
        changed: totals.changed,
        notMigrated: notMigrated ?? null
      }
    }
  })

  const work = Effect.gen(function*() {
    const source = yield* AfterCopy
    const store = yield* ObjectStore
    yield* writeStderr(
      `prune: ${source.table}, copies in ${store.target} checked first (${describeLevel(level)})` +
        `${apply ? "" : "; dry run: nothing is changed (add --yes to prune)"}\n`
    )
    // before anything is checked: what releasing needs (relstorage: the index on blob_chunk(chunk))
    for (const note of yield* source.preparePrune({ apply, createIndex: flags.createChunkIndex })) yield* writeStderr(`prune: ${note}\n`)

    const releaseBatch = (batch: ReadonlyArray<MigratedRow>) =>
      Effect.gen(function*() {
        const done = yield* source.release(batch)
        totals.released += done.released.length
        totals.changed += done.changed.length
        totals.unlinked += done.unlinked.length
        totals.freedBytes += done.unlinked.reduce((s, u) => s + u.bytes, 0)
        totals.kept += done.kept.length
        totals.absent += done.absent.length
        for (const row of done.changed) {
          yield* task.out(
            `SKIPPED ${row.key.trim()} (${describeOids(row)}): the row changed after it was verified; left alone`,
            { event: "skipped", key: row.key.trim(), oids: oidsOf(row), reason: "the row changed after it was verified" }
          )
        }
        for (const k of done.kept) {
          yield* task.out(
            `KEPT large object ${k.oid}: still referenced by ${k.referencedBy.join(", ")}`,
            { event: "kept", oid: k.oid, referencedBy: k.referencedBy.map((r) => r.trim()) }
          )
        }
      })

    const simulateBatch = (batch: ReadonlyArray<MigratedRow>) =>
      Effect.gen(function*() {
        const refs = yield* source.references(batch.flatMap(oidsOf))
        const inBatch = new Set(batch.map((r) => r.key))
        totals.released += batch.length
        // a row's content may span several large objects (relstorage's chunks)
        for (const oid of new Set(batch.flatMap(oidsOf))) {
          const referencing = refs.filter((r) => r.oid === oid)
          const others = referencing.filter((r) => !inBatch.has(r.key) && !wouldRelease.has(r.key)).map((r) => r.key.trim())
          if (referencing.length > 1) for (const r of batch) if (oidsOf(r).includes(oid)) wouldRelease.add(r.key)
          if (!referencing.some((r) => r.present)) {
            totals.absent += 1
          } else if (others.length > 0) {
            totals.kept += 1
            yield* task.out(`WOULD KEEP large object ${oid}: still referenced by ${others.join(", ")}`, { event: "kept", oid, referencedBy: others })
          } else {
            totals.unlinked += 1
            totals.freedBytes += bytesOfOid(batch.find((r) => oidsOf(r).includes(oid))!, oid)
          }
        }
      })

    yield* Verification.countTotals(progress, { withData: true, count: flags.count })
    const unmigrated = yield* task.watch(state, Effect.gen(function*() {
      yield* Verification.run({
        level,
        concurrency: parallel,
        retry: defaultPolicy(settings.retries),
        withData: true,
        // an inline copy has no recorded hash: only the source can prove its bytes
        inlineAgainstSource: true,
        onBad: (bad) => task.out(`REFUSED ${describeBad(bad)}; large object kept`, badEvent("refused", bad)),
        onPage: (good) => Effect.forEach(chunks(good, batchSize), apply ? releaseBatch : simulateBatch, { discard: true })
      }, progress)
      // before the last progress (json: before the summary event)
      const unmigrated = yield* source.unmigratedWithData(listedUnmigrated)
      notMigrated = unmigrated.count
      for (const row of unmigrated.examples) {
        yield* task.out(
          `REFUSED ${row.key.trim()} (oid ${row.oid}): not migrated (${source.unmigratedReason}); large object kept`,
          { event: "not-migrated", key: row.key.trim(), oid: row.oid, reason: source.unmigratedReason }
        )
      }
      if (unmigrated.count > unmigrated.examples.length) {
        yield* task.out(`... and ${unmigrated.count - unmigrated.examples.length} more rows not migrated`)
      }
      return unmigrated
    }))
    return { released: source.releaseMeaning, unmigrated: unmigrated.count }
  }).pipe(
    Connections.provide(settings.pgUrl, Connections.databaseAndStore(settings, parallel)),
    Effect.onExit((exit) =>
      Exit.isFailure(exit)
        ? writeStderr(
          `prune stopped: ${totals.released} row(s) released, ${totals.unlinked} large object(s) unlinked ` +
            `(${Verification.bytesText(totals.freedBytes)}) before the failure; run it again to go on\n`
        )
        : Effect.void
    )
  )
  const { released, unmigrated } = yield* work
  const verb = apply ? { release: "released", unlink: "unlinked", free: "freed", keep: "kept" } : {
    release: "would release",
    unlink: "would unlink",
    free: "would free",
    keep: "would keep"
  }
  yield* task.out(
    `${apply ? "pruned" : "dry run (nothing changed; add --yes to prune)"}: checked ${progress.checked} migrated row(s) ` +
      `with a large object in ${Verification.durationSeconds(progress)} s; ${verb.release} ${totals.released} row(s) (${released}), ` +
      `${verb.unlink} ${totals.unlinked} large object(s), ${verb.free} ${Verification.bytesText(totals.freedBytes)}; ` +
      `${verb.keep} ${totals.kept} large object(s) still referenced by other rows` +
      `${totals.absent > 0 ? `; ${totals.absent} oid(s) named no large object` : ""}` +
      `${totals.changed > 0 ? `; ${totals.changed} row(s) changed meanwhile and were skipped` : ""}` +
      `; refused ${progress.badCount} bad, ${unmigrated} not migrated`
  )
  if (progress.badCount > 0) {
    return yield* new VerificationFailed({
      bad: progress.badCount,
      consequence: "their large objects were kept (REFUSED lines above); `lo-migrate verify` shows the details"
    })
  }
})).pipe(
  Command.withDescription(
    "Unlink the large objects of migrated rows whose S3 copy verifies, and set their data to NULL (dry run without --yes)"
  )
)
