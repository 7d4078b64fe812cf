// Resume semantics as a property, against the tests' real PostgreSQL and s3rver, the pipeline running
// in-process through the library API (Migration.run) with the ObjectStore and CopySource services wrapped
// by counting / failing / interrupting decorators.
//
// For random data sets (0 B to 6 MiB objects, some rows invalid) and random schedules (each run of the
// migration interrupted after the k-th call of a stage, or a call failing before or after it reached
// the real service), running the migration again and again until a run succeeds always ends with:
// - every valid row's sha2 = the SHA-256 of its bytes, S3 holding exactly those bytes under that key
//   and no other key; invalid rows unmarked;
// - no temp file left, after every run;
// - at most 1 + (number of interrupted or failed runs) uploads per object;
// - at every observed instant, no row marked whose object is not in S3: checked inside the wrapped
//   `CopySource.commit` before it delegates (HEAD of every object of the chunk: present, right size and
//   sha256 metadata) and after every run (every marked row's object read back and hashed).
//
// LO_MIGRATE_PROPERTY_RUNS sets the number of generated cases (default 15; raise it for a soak).
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, References } from "effect"
import { SqlClient } from "effect/sql"
import * as fc from "fast-check"
import * as NodeFs from "node:fs"
import { DatabaseError, StoreError } from "../src/domain/Errors.ts"
import type { Stored } from "../src/domain/LargeObject.ts"
import { type Settings, validate } from "../src/domain/Settings.ts"
import * as Migration from "../src/migrate/Migration.ts"
import { CopySource } from "../src/phases/CopySource.ts"
import { ObjectStore } from "../src/s3/ObjectStore.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows, sha256Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { FaultProxy, type FaultRule, faults } from "./support/FaultProxy.ts"
import { TestS3 } from "./support/S3.ts"

const KiB = 1024
const MiB = 1024 * KiB
const numRuns = Number(process.env.LO_MIGRATE_PROPERTY_RUNS ?? 15)
// A fixed seed by default, so CI runs the same cases every time (and the coverage checks below are
// deterministic); LO_MIGRATE_PROPERTY_SEED explores others, e.g. with a larger LO_MIGRATE_PROPERTY_RUNS.
const seed = Number(process.env.LO_MIGRATE_PROPERTY_SEED ?? 20261121)

// ---------------------------------------------------------------------------------------------------------
// what is generated

type RowKind = "valid" | "null-data" | "size-mismatch" | "sha1-mismatch" | "dangling"
interface RowSpec {
  readonly size: number
  readonly kind: RowKind
}
type Op = "page" | "put" | "commit"
/** One run of the migration: cut short at the n-th call of `op` (before or after it reached the real service). */
interface RunPlan {
  readonly action: "interrupt" | "fail"
  readonly op: Op
  readonly when: "before" | "after"
  readonly n: number
}
interface Tuning {
  readonly commitChunk: number
  readonly storerThreads: number
  readonly receiverThreads: number
  /**
   * Per-request probability of a transient S3 fault (500, reset after the server stored the object,
   * truncated answer) injected by the proxy during the scheduled runs: retried inside the run, or, past
   * the retry budget, the run fails. The final run has none.
   */
  readonly s3FaultRate: number
}

const sizeArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 4 * KiB }) },
  { weight: 3, arbitrary: fc.integer({ min: 4 * KiB + 1, max: 256 * KiB }) },
  // above the 5 MiB part size: multipart
  { weight: 1, arbitrary: fc.integer({ min: 5 * MiB + 1, max: 6 * MiB }) }
)
const rowArb: fc.Arbitrary<RowSpec> = fc.record({
  size: sizeArb,
  kind: fc.oneof(
    { weight: 12, arbitrary: fc.constant<RowKind>("valid") },
    { weight: 1, arbitrary: fc.constantFrom<RowKind>("null-data", "size-mismatch", "sha1-mismatch", "dangling") }
  )
})
const planArb: fc.Arbitrary<RunPlan> = fc.record({
  action: fc.constantFrom("interrupt", "fail"),
  op: fc.constantFrom<Op>("page", "put", "commit"),
  when: fc.constantFrom("before", "after"),
  // small counts are where the interesting cuts are (the first page, the first puts and commits)
  n: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 3 }) }, { weight: 1, arbitrary: fc.integer({ min: 4, max: 12 }) })
})
const tuningArb: fc.Arbitrary<Tuning> = fc.record({
  commitChunk: fc.integer({ min: 1, max: 5 }),
  storerThreads: fc.integer({ min: 1, max: 3 }),
  receiverThreads: fc.integer({ min: 1, max: 2 }),
  s3FaultRate: fc.constantFrom(0, 0, 0.1, 0.3)
})

// ---------------------------------------------------------------------------------------------------------
// one case

const env = FaultProxy.layerWith({ seed: 7 }).pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const transientFaults = (rate: number): ReadonlyArray<FaultRule> =>
  rate === 0 ? [] : [
    { path: /\/[0-9a-f]{64}(\?|$)/, probability: rate / 3, fault: faults.internalError },
    { path: /\/[0-9a-f]{64}(\?|$)/, probability: rate / 3, fault: faults.resetAfter },
    { path: /\/[0-9a-f]{64}(\?|$)/, probability: rate / 3, fault: faults.truncate }
  ]

let caseNumber = 0
/** How many runs were cut short, by kind: proves the schedules really exercise interruptions. */
const tally = { interrupt: 0, fail: 0, uploads: 0, s3Faults: 0 }

/** Drops the previous case's tables and large objects, creates the schema and the rows. */
const setUpData = (rows: ReadonlyArray<RowSpec>) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`DROP TABLE IF EXISTS _nice_binary, nice_batch_job`
    yield* sql`SELECT lo_unlink(oid) FROM pg_largeobject_metadata`
    yield* createNice2Schema()
    const valid: Array<InsertedObject> = []
    const invalid: Array<InsertedObject> = []
    const seen = new Set<string>()
    for (const [i, spec] of rows.entries()) {
      const bytes = randomBytes(spec.size, 10_000 * caseNumber + i)
      const fake = `${(caseNumber * 1000 + i).toString(16).padStart(8, "0")}${"e".repeat(32)}`
      const inserted = yield* (() => {
        switch (spec.kind) {
          case "valid":
            return insertObject({ bytes })
          case "null-data":
            return insertObject({ bytes: null, hash: fake })
          case "size-mismatch":
            return insertObject({ bytes, size: spec.size + 1, hash: fake })
          case "sha1-mismatch":
            return insertObject({ bytes, hash: fake })
          case "dangling":
            return insertObject({ bytes, hash: fake, dataOid: 4_000_000_000 - i })
        }
      })().pipe(
        // identical contents (e.g. two empty objects) share a key: keep the first
        Effect.catch(() => Effect.succeed(undefined))
      )
      if (inserted === undefined || seen.has(inserted.hash)) continue
      seen.add(inserted.hash)
      ;(spec.kind === "valid" ? valid : invalid).push(inserted)
    }
    return { valid, invalid }
  })

interface Counters {
  /** uploads that reached the real store, per key */
  readonly uploads: Map<string, number>
  /** invariant violations seen inside commit */
  readonly violations: Array<string>
}

type RunOutcome = "succeeded" | "cut" | "failed"

/** One run of the migration with the plan's decorators; resolves when it ended, however it ended. */
const runOnce = (settings: Settings, plan: RunPlan | undefined, counters: Counters) =>
  Effect.gen(function*() {
    const cut = yield* Deferred.make<void>()
    const calls: Record<Op, number> = { page: 0, put: 0, commit: 0 }
    let triggered = false

    /** Runs `real` unless the plan cuts this call: interrupt (the run is interrupted from outside) or fail. */
    const step = <A, E>(op: Op, real: Effect.Effect<A, E>, failure: () => E): Effect.Effect<A, E> =>
      Effect.gen(function*() {
        calls[op] += 1
        const hit = plan !== undefined && !triggered && plan.op === op && calls[op] === plan.n
        if (!hit) return yield* real
        triggered = true
        const cutNow: Effect.Effect<never, E> = plan.action === "interrupt"
          ? Effect.andThen(Deferred.succeed(cut, undefined), Effect.never)
          : Effect.fail(failure())
        if (plan.when === "before") return yield* cutNow
        yield* real
        return yield* cutNow
      })

    const program = Effect.gen(function*() {
      const store = yield* ObjectStore
      const source = yield* CopySource
      const checkChunk = (chunk: ReadonlyArray<Stored>) =>
        Effect.forEach(chunk, (s) =>
          store.head(s.key).pipe(
            Effect.map((info) => {
              if (Option.isNone(info)) counters.violations.push(`commit of ${s.candidate.key}: ${s.key} not in S3`)
              else if (info.value.size !== s.candidate.size || info.value.metadata.sha256 !== s.sha256) {
                counters.violations.push(`commit of ${s.candidate.key}: ${s.key} in S3 with size ${info.value.size}, sha256 ${info.value.metadata.sha256}`)
              }
            })
          ), { discard: true })
      const wrappedStore = ObjectStore.of({
        ...store,
        put: (request) =>
          step("put", Effect.suspend(() => {
            counters.uploads.set(request.key, (counters.uploads.get(request.key) ?? 0) + 1)
            return store.put(request)
          }), () => new StoreError({ operation: "PutObject", key: request.key, cause: "injected failure" }))
      })
      const wrappedSource = CopySource.of({
        ...source,
        page: (after, limit) =>
          step("page", source.page(after, limit), () => new DatabaseError({ operation: "list rows", cause: "injected failure" })),
        commit: (chunk) =>
          Effect.andThen(
            checkChunk(chunk).pipe(Effect.orDie),
            step("commit", source.commit(chunk), () => new DatabaseError({ operation: "record sha2", cause: "injected failure" }))
          )
      })
      return yield* Migration.run(settings, { report: () => Effect.void }).pipe(
        Effect.provideService(ObjectStore, wrappedStore),
        Effect.provideService(CopySource, wrappedSource),
        // the runs' own logs (failed rows, retries) would drown the test output
        Effect.provideService(References.MinimumLogLevel, "None")
      )
    }).pipe(Migration.provideTo(settings))

    const fiber = yield* Effect.forkChild(program)
    const outcome = yield* Effect.raceFirst(
      Fiber.await(fiber).pipe(Effect.map((exit): RunOutcome => (exit._tag === "Success" ? "succeeded" : "failed"))),
      Deferred.await(cut).pipe(Effect.andThen(Fiber.interrupt(fiber)), Effect.as<RunOutcome>("cut"))
    )
    const exit = yield* Fiber.await(fiber)
    return { outcome, exit, triggered }
  })

const settingsFor = (bucket: string, tempDir: string, tuning: Tuning) =>
  Effect.gen(function*() {
    const db = yield* TestDatabase
    const s3 = yield* TestS3
    const proxy = yield* FaultProxy
    const { s3FaultRate: _, ...threads } = tuning
    return yield* validate({
      pgUrl: db.url,
      s3Url: proxy.endpoint,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      bucket,
      inMemMax: 16,
      uploadChunkSize: 5120,
      retries: 3,
      tempDir,
      ...threads
    })
  })

const checkCase = (rows: ReadonlyArray<RowSpec>, plans: ReadonlyArray<RunPlan>, tuning: Tuning) =>
  Effect.gen(function*() {
    caseNumber += 1
    const s3 = yield* TestS3
    const { valid, invalid } = yield* setUpData(rows)
    const bucket = `prop-${process.pid}-${caseNumber}`
    yield* s3.createBucket(bucket)
    const tempDir = NodeFs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/lo-migrate-prop-`)
    const settings = yield* settingsFor(bucket, tempDir, tuning)
    const counters: Counters = { uploads: new Map(), violations: [] }

    /** What must hold after every run: marked rows backed by the right bytes, no temp file. */
    const afterRun = (label: string) =>
      Effect.gen(function*() {
        for (const row of yield* readRows) {
          if (row.sha2 === null) continue
          const stored = yield* s3.getObject(row.sha2, bucket)
          assert.isTrue(Option.isSome(stored), `${label}: row ${row.hash} marked, ${row.sha2} not in S3`)
          assert.strictEqual(sha256Hex(Option.getOrThrow(stored).bytes), row.sha2, `${label}: bytes under ${row.sha2}`)
        }
        assert.deepStrictEqual(NodeFs.readdirSync(tempDir), [], `${label}: temp files left`)
      })

    const proxy = yield* FaultProxy
    let interruptions = 0
    try {
      yield* proxy.setRules(transientFaults(tuning.s3FaultRate))
      for (const [i, plan] of plans.entries()) {
        const { outcome, exit, triggered } = yield* runOnce(settings, plan, counters)
        if (triggered) tally[plan.action] += 1
        // a run that did not succeed (cut by the plan, or S3 faults past the retry budget) is one more
        // interruption; without either, the run must have finished on its own
        if (outcome !== "succeeded") interruptions += 1
        if (!triggered && tuning.s3FaultRate === 0) {
          assert.strictEqual(outcome, "succeeded", `run ${i + 1} (${JSON.stringify(plan)}) ended ${exit._tag}: ${String(exit)}`)
        }
        yield* afterRun(`after run ${i + 1} (${JSON.stringify(plan)}, ${outcome})`)
      }
      tally.s3Faults = (yield* proxy.log).filter((r) => r.fault !== undefined).length
      yield* proxy.setRules([])
      const last = yield* runOnce(settings, undefined, counters)
      assert.strictEqual(last.outcome, "succeeded", `the clean run ended with ${String(last.exit)}`)
      yield* afterRun("after the clean run")

      assert.deepStrictEqual(counters.violations, [], "rows committed whose object was not in S3")
      const marked = new Map((yield* readRows).map((r) => [r.hash, r.sha2]))
      for (const o of valid) assert.strictEqual(marked.get(o.hash), o.sha256, `sha2 of valid row ${o.hash}`)
      for (const o of invalid) assert.isNull(marked.get(o.hash) ?? null, `invalid row ${o.hash} unmarked`)
      const keys = [...(yield* s3.listKeys({ bucket }))].sort()
      assert.deepStrictEqual(keys, [...new Set(valid.map((o) => o.sha256!))].sort(), "S3 holds exactly the valid objects")
      tally.uploads += counters.uploads.size
      for (const [key, n] of counters.uploads) {
        assert.isAtMost(n, 1 + interruptions, `uploads of ${key} with ${interruptions} interruption(s)`)
      }
    } finally {
      NodeFs.rmSync(tempDir, { recursive: true, force: true })
    }
  })

describe("resume semantics (property)", () => {
  it.live(`interrupted and failing runs, repeated until success, always end migrated and consistent (${numRuns} cases)`, () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<TestDatabase | TestS3 | FaultProxy | SqlClient.SqlClient>()
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(rowArb, { maxLength: 12, size: "medium" }),
            fc.array(planArb, { maxLength: 4, size: "medium" }),
            tuningArb,
            (rows, plans, tuning) => Effect.runPromiseWith(context)(checkCase(rows, plans, tuning))
          ),
          { numRuns, seed, endOnFailure: false, interruptAfterTimeLimit: 10 * 60_000 }
        )
      )
      if (numRuns >= 10) {
        assert.isAbove(tally.interrupt, 0, "some runs were interrupted")
        assert.isAbove(tally.fail, 0, "some runs failed")
        assert.isAbove(tally.uploads, 0, "objects were uploaded")
        assert.isAbove(tally.s3Faults, 0, "S3 faults were injected")
      }
      yield* Effect.logInfo(`resume property (seed ${seed}): ${JSON.stringify(tally)}`)
    }).pipe(Effect.provide(env)), { timeout: 15 * 60_000 })
})
