// Bad input, beyond the cases of Migrate.test.ts: blank mime types, the --failures report, more bad flag
// values, S3 refusing signatures or writes (simulated by the fault proxy: s3rver checks no signature),
// and secrets that never show, in help, errors and debug logs included.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option } from "effect"
import { SqlClient } from "effect/sql"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, faults } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { assertNothingMarked, freshTempDir } from "./support/Verify.ts"
import { targetVia } from "./support/Target.ts"

const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const target = targetVia

describe("bad rows", () => {
  it.live("blank mime types become application/octet-stream; --failures FILE lists every failed row as JSON lines", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const empty = yield* insertObject({ bytes: randomBytes(20, 1), mime: "" })
      const blank = yield* insertObject({ bytes: randomBytes(20, 2), mime: "   " })
      const nullData = yield* insertObject({ bytes: null })
      const dangling = yield* insertObject({ bytes: randomBytes(10, 3) })
      yield* sql`SELECT lo_unlink(${dangling.oid})`
      const tmp = yield* freshTempDir
      const report = NodePath.join(tmp, "failures.jsonl")
      NodeFs.writeFileSync(report, "stale content from an earlier run\n")

      const result = yield* runCli(["migrate", ...(yield* target()), "--failures", report])
      assert.strictEqual(result.code, 1, result.stderr)
      for (const o of [empty, blank]) {
        const stored = yield* s3.getObject(o.sha256!)
        assert.isTrue(Option.isSome(stored))
        assert.strictEqual(Option.getOrThrow(stored).contentType, "application/octet-stream")
      }
      const lines = NodeFs.readFileSync(report, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.deepStrictEqual(
        lines.map((l) => [l.key, l.oid, l.reason]).sort(),
        [[nullData.hash, null, "null-data"], [dangling.hash, dangling.oid, "missing-object"]].sort()
      )
      for (const l of lines) {
        assert.isString(l.detail)
        assert.isString(l.at)
      }
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("refused before any work (exit 2)", () => {
  const refused = (args: ReadonlyArray<string>, message: RegExp) =>
    Effect.gen(function*() {
      const result = yield* runCli(["migrate", ...args])
      assert.strictEqual(result.code, 2, `exit code for ${args.slice(-2).join(" ")}; stderr: ${result.stderr}`)
      assert.match(result.stderr, message)
      return result
    })

  it.live("more bad flag values: negative threads, zero retries, a unit in a number, unusable files", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const args = yield* target()
      yield* refused([...args, "--receiver-threads", "-1"], /invalid setting --receiver-threads: -1 is below the minimum of 1/)
      yield* refused([...args, "--committer-threads", "0"], /invalid setting --committer-threads: 0 is below the minimum of 1/)
      yield* refused([...args, "--retries", "0"], /invalid setting --retries/)
      yield* refused([...args, "--upload-chunk-size", "5MiB"], /upload-chunk-size/)
      yield* refused([...args, "--failures", "/nonexistent-dir/failures.jsonl"], /invalid setting --failures: cannot write/)
      yield* refused([...args, "--pg-ca", "/nonexistent-dir/ca.pem"], /pg-ca/)
      const s3Url = args.indexOf("--s3-url") + 1
      yield* refused(args.map((a, i) => (i === s3Url ? "not a url" : a)),
        /invalid setting --s3-url: is not a valid URL\n  help: give it as http:\/\/host\[:port\] or https:\/\/host\[:port\]/)
      yield* refused(args.map((a, i) => (i === s3Url ? "ftp://example.org" : a)), /invalid setting --s3-url: must start with http:\/\/ or https:\/\//)
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [])
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("S3 rejects the signature (wrong secret key): named, exit 2, nothing done", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(10, 9) })
      const proxy = yield* FaultProxy
      yield* proxy.setRules([{ fault: faults.signatureDoesNotMatch }])
      const args = [...(yield* target(proxy.endpoint))]
      args[args.indexOf("--secret-key") + 1] = "wrong-secret-value-x"
      const result = yield* refused(args, /S3 bucket .*: credentials rejected .*SignatureDoesNotMatch.*\n  help: check --access-key and --secret-key/)
      assert.notInclude(result.stderr + result.stdout, "wrong-secret-value-x")
      yield* assertNothingMarked
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("the bucket refuses writes (403 AccessDenied to PUT): named, exit 2, nothing done", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(10, 10) })
      const proxy = yield* FaultProxy
      yield* proxy.setRules([{ method: "PUT", fault: faults.accessDenied }])
      yield* refused(yield* target(proxy.endpoint), /S3 bucket .*: refuses writes \(AccessDenied\)/)
      yield* assertNothingMarked
      assert.deepStrictEqual(yield* (yield* TestS3).listKeys(), [])
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe("secrets", () => {
  const pgSecret = "pg-Secret-Value-91"
  const s3Secret = "s3-Secret-Value-37"

  it.live("never printed: not in help, not in errors, not in debug logs", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy
      const withPassword = (password: string) => {
        const url = new URL(db.url)
        url.password = password
        return url.toString()
      }
      const secretEnv = {
        LO_MIGRATE_PG_URL: withPassword(pgSecret),
        AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY: s3Secret
      }
      const outputs: Array<string> = []
      const help = yield* runCli(["migrate", "--help"], { env: secretEnv })
      assert.strictEqual(help.code, 0)
      assert.include(help.stdout, "--secret-key")
      outputs.push(help.stdout + help.stderr)

      // wrong PostgreSQL password, from the environment and from the flag
      const fromEnv = yield* runCli(["migrate", "--bucket", s3.bucket, "--s3-url", s3.endpoint, "--log-level", "debug"], { env: secretEnv })
      assert.strictEqual(fromEnv.code, 2)
      outputs.push(fromEnv.stdout + fromEnv.stderr)
      const fromFlag = yield* runCli([
        "migrate", "--pg-url", withPassword(pgSecret), "--s3-url", s3.endpoint, "--bucket", s3.bucket,
        "--access-key", "AKIDEXAMPLE", "--secret-key", s3Secret, "--log-level", "debug"
      ])
      assert.strictEqual(fromFlag.code, 2)
      outputs.push(fromFlag.stdout + fromFlag.stderr)

      // the right database, S3 failing and retried (debug logs show the retries), then refusing
      yield* createNice2Schema()
      yield* proxy.setRules([{ count: 2, fault: faults.internalError }, { fault: faults.signatureDoesNotMatch }])
      const s3Refused = yield* runCli([
        "migrate", "--pg-url", db.url, "--s3-url", proxy.endpoint, "--bucket", s3.bucket,
        "--access-key", s3.accessKey, "--secret-key", s3Secret, "--log-level", "debug"
      ])
      assert.strictEqual(s3Refused.code, 2, s3Refused.stderr)
      assert.include(s3Refused.stderr, "retrying")
      outputs.push(s3Refused.stdout + s3Refused.stderr)

      for (const text of outputs) {
        assert.notInclude(text, pgSecret)
        assert.notInclude(text, s3Secret)
      }
    }).pipe(Effect.scoped, Effect.provide(env)))
})
