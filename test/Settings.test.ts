// Settings validation: the original's defaults, units converted once, and every bad value refused with
// the flag's name.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { defaults, validate } from "../src/domain/Settings.ts"

const base = { pgUrl: "postgresql://u:pw@localhost/db", bucket: "my-bucket" }

describe("Settings.validate", () => {
  it.effect("applies the original's defaults (storers: 16, from measurement), in bytes where sizes are concerned", () =>
    Effect.gen(function*() {
      const s = yield* validate(base)
      assert.strictEqual(s.receiverThreads, 2)
      assert.strictEqual(s.storerThreads, 16) // the original's 5 was slower in npm run bench (BENCHMARKS.md)
      assert.strictEqual(s.committerThreads, 2)
      assert.strictEqual(s.receiverQueue, 8192)
      assert.strictEqual(s.storerQueue, 1024)
      assert.strictEqual(s.committerQueue, 8192)
      assert.strictEqual(s.commitChunk, 100)
      assert.strictEqual(s.inMemMax, 1024 * 1024)
      assert.strictEqual(s.uploadChunkSize, 20 * 1024 * 1024)
      assert.strictEqual(s.readChunkSize, 2 * 1024 * 1024)
      assert.strictEqual(s.interval, 10)
      assert.strictEqual(s.region, "us-east-1")
      assert.isFalse(s.finalize)
      assert.strictEqual(s.retries, defaults.retries)
      assert.strictEqual(s.memoryBudget, 256 * 1024 * 1024)
    }))

  it.effect("--max-storer-threads alone below the default start lowers the start to it; with --storer-threads above it, refused", () =>
    Effect.gen(function*() {
      const low = yield* validate({ ...base, maxStorerThreads: 8 })
      assert.strictEqual(low.storerThreads, 8)
      assert.strictEqual(low.maxStorerThreads, 8)
      const workers = yield* validate({ ...base, workers: 8, maxStorerThreads: 2 })
      assert.strictEqual(workers.storerThreads, 2)
      assert.strictEqual(workers.maxStorerThreads, 2)
      const high = yield* validate({ ...base, maxStorerThreads: 64 })
      assert.strictEqual(high.storerThreads, 16)
      assert.strictEqual(high.maxStorerThreads, 64)
      const refused = yield* Effect.flip(validate({ ...base, storerThreads: 8, maxStorerThreads: 4 }))
      assert.strictEqual(refused.setting, "--max-storer-threads")
    }))

  it.effect("redacts secrets given as plain strings", () =>
    Effect.gen(function*() {
      const s = yield* validate({ ...base, accessKey: "AKIA", secretKey: "very-secret" })
      assert.isTrue(Redacted.isRedacted(s.pgUrl))
      assert.isTrue(Redacted.isRedacted(s.secretKey))
      assert.strictEqual(Redacted.value(s.secretKey!), "very-secret")
      assert.notInclude(String(s.secretKey), "very-secret")
      assert.notInclude(JSON.stringify(s), "very-secret")
      assert.notInclude(JSON.stringify(s), "pw@")
    }))

  it.effect("path-style addressing defaults on for a custom endpoint and off for AWS", () =>
    Effect.gen(function*() {
      assert.isTrue((yield* validate({ ...base, s3Url: "http://127.0.0.1:9000" })).pathStyle)
      assert.isFalse((yield* validate(base)).pathStyle)
      assert.isFalse((yield* validate({ ...base, s3Url: "https://s3.example.org", pathStyle: false })).pathStyle)
    }))

  const refused = (input: Partial<Parameters<typeof validate>[0]>, setting: string, problem: RegExp) =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validate({ ...base, ...input }))
      assert.strictEqual(error._tag, "SettingsError")
      assert.strictEqual(error.setting, setting)
      assert.match(error.problem, problem)
    })

  it.effect("refuses bad values, naming the flag", () =>
    Effect.gen(function*() {
      yield* refused({ storerThreads: 0 }, "--storer-threads", /below the minimum of 1/)
      yield* refused({ receiverThreads: -3 }, "--receiver-threads", /below the minimum of 1/)
      yield* refused({ committerQueue: 0 }, "--committer-queue", /below the minimum/)
      yield* refused({ commitChunk: 1.5 }, "--commit-chunk", /not an integer/)
      yield* refused({ uploadChunkSize: 5119 }, "--upload-chunk-size", /below the minimum of 5120/)
      yield* refused({ uploadChunkSize: 6 * 1024 * 1024 }, "--upload-chunk-size", /at most 5 GiB/)
      yield* refused({ readChunkSize: 63 }, "--read-chunk-size", /below the minimum of 64/)
      yield* refused({ readChunkSize: 8193 }, "--read-chunk-size", /above the maximum of 8192/)
      yield* refused({ inMemMax: -1 }, "--in-mem-max", /below the minimum of 0/)
      yield* refused({ interval: 0 }, "--interval", /below the minimum/)
      yield* refused({ bucket: "" }, "--bucket", /required/)
      yield* refused({ bucket: "Has_Upper" }, "--bucket", /not a valid bucket name/)
      yield* refused({ pgUrl: "mysql://x@y/z" }, "--pg-url", /must start with postgres:\/\/ or postgresql:\/\//)
      yield* refused({ s3Url: "ftp://example.org" }, "--s3-url", /must start with http:\/\/ or https:\/\//)
      yield* refused({ accessKey: "AKIA" }, "--secret-key", /required when the other S3 key is given/)
    }))

  it.effect("never echoes an unparsable PostgreSQL URL, which may hold a password", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(validate({ ...base, pgUrl: "postgres://u:hunter2@[bad" }))
      assert.notInclude(error.message, "hunter2")
      assert.include(error.message, "--pg-url")
    }))
})
