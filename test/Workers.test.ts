// `-w/--workers N`: one knob that scales receivers and storers (the PostgreSQL pool follows them);
// explicit per-stage flags win. Also `--memory-budget`.
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { defaults, validate } from "../src/domain/Settings.ts"
import { runCli } from "./support/Cli.ts"

const base = { pgUrl: "postgres://u:p@127.0.0.1:5432/db", bucket: "bucket-one" }

describe("--workers", () => {
  it.effect("scales storers to N and receivers to one per 8 storers; per-stage settings win", () =>
    Effect.gen(function*() {
      const plain = yield* validate(base)
      assert.strictEqual(plain.receiverThreads, defaults.receiverThreads)
      assert.strictEqual(plain.storerThreads, defaults.storerThreads)
      assert.strictEqual(plain.memoryBudget, defaults.memoryBudget * 1024 * 1024)

      const five = yield* validate({ ...base, workers: 5 })
      assert.deepStrictEqual([five.receiverThreads, five.storerThreads], [1, 5])
      const sixteen = yield* validate({ ...base, workers: 16 })
      assert.deepStrictEqual([sixteen.receiverThreads, sixteen.storerThreads], [2, 16])
      const seventeen = yield* validate({ ...base, workers: 17 })
      assert.deepStrictEqual([seventeen.receiverThreads, seventeen.storerThreads], [3, 17])
      const one = yield* validate({ ...base, workers: 1 })
      assert.deepStrictEqual([one.receiverThreads, one.storerThreads], [1, 1])

      const explicit = yield* validate({ ...base, workers: 16, storerThreads: 3, receiverThreads: 1 })
      assert.deepStrictEqual([explicit.receiverThreads, explicit.storerThreads], [1, 3])
      const zero = yield* Effect.flip(validate({ ...base, workers: 0 }))
      assert.strictEqual(zero.setting, "--workers")
      const budget = yield* validate({ ...base, memoryBudget: 64 })
      assert.strictEqual(budget.memoryBudget, 64 * 1024 * 1024)
    }))

  it.live("-w on the command line shows in the configuration block, and an explicit flag wins", () =>
    Effect.gen(function*() {
      // an unreachable server: the run stops with exit 2 right after printing its configuration
      const args = ["migrate", "--pg-url", "postgres://u:p@127.0.0.1:1/db", "--s3-url", "http://127.0.0.1:1", "--bucket", "bucket-one"]
      const scaled = yield* runCli([...args, "-w", "32"])
      assert.strictEqual(scaled.code, 2, scaled.stderr)
      assert.match(scaled.stderr, /receiver threads:\s+4\n/)
      assert.match(scaled.stderr, /storer threads:\s+32\n/)
      const mixed = yield* runCli([...args, "--workers", "32", "--storer-threads", "7"])
      assert.match(mixed.stderr, /receiver threads:\s+4\n/)
      assert.match(mixed.stderr, /storer threads:\s+7\n/)
    }))
})
