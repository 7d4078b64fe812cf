// Crashes with real processes: the executable SIGKILLed at random moments, several times in a row, then
// run to the end. Everything verifies, S3 holds no key that no row names, and the temp files the killed
// runs left behind are removed by the next run.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { assertAllMigrated, assertMarkedRowsBacked, assertNoStrayKeys, freshTempDir } from "./support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB
const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** Seeded, so a failing schedule can be replayed: LO_MIGRATE_CRASH_SEED. */
const seed = Number(process.env.LO_MIGRATE_CRASH_SEED ?? Date.now() % 100_000)
const random = (() => {
  let x = seed * 2654435761 || 1
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
})()

describe("crashes", () => {
  it.live(`SIGKILL at random moments, several times, then a run to the end (seed ${seed})`, () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const inserted: Array<InsertedObject> = []
      for (let i = 0; i < 250; i++) {
        // mostly small, every 25th above --in-mem-max (temp file), one multipart object
        const size = i === 0 ? 6 * MiB + 1 : i % 25 === 0 ? 1536 * KiB + i : 4 * KiB + ((i * 997) % (36 * KiB))
        inserted.push(yield* insertObject({ bytes: randomBytes(size, 7000 + i) }))
      }
      const tmp = yield* freshTempDir
      const args = [
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket, "--temp-dir", tmp, "--commit-chunk", "7",
        "--upload-chunk-size", "5120", "--storer-threads", "3"
      ]
      const schedule: Array<number> = []
      let killed = 0
      for (let k = 0; k < 3; k++) {
        const delay = 300 + Math.floor(random() * 2500)
        schedule.push(delay)
        const result = yield* runCli(args, {
          onStart: (child) => {
            const timer = setTimeout(() => child.kill("SIGKILL"), delay)
            child.on("close", () => clearTimeout(timer))
          }
        })
        if (result.signal === "SIGKILL") killed++
        else assert.oneOf(result.code, [0], `run ${k + 1} (kill at ${delay} ms) ended on its own: ${result.stderr}`)
        yield* assertMarkedRowsBacked
      }
      assert.isAbove(killed, 0, `no run was killed (schedule ${schedule.join(", ")} ms)`)
      const last = yield* runCli(args)
      assert.strictEqual(last.code, 0, last.stderr)
      yield* assertAllMigrated(inserted)
      yield* assertNoStrayKeys
      assert.deepStrictEqual(NodeFs.readdirSync(tmp), [], "temp files of killed runs removed")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
