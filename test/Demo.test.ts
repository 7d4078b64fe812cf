// `lo-migrate demo` end to end: embedded PostgreSQL + in-process S3, seeded, migrated, verified, and
// everything removed afterwards, also when interrupted with Ctrl-C (SIGINT).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as NodeFs from "node:fs"
import { demoSizes } from "../src/cli/demo.ts"
import { runCli } from "./support/Cli.ts"

const KiB = 1024
const MiB = 1024 * KiB

/** The directories the demo announces on stderr (cluster dir, s3rver data dir). */
const announcedDirs = (stderr: string) => {
  const pg = /throwaway cluster in (\S+)/.exec(stderr)?.[1]
  const s3 = /data in (\S+)/.exec(stderr)?.[1]
  return { pg, s3 }
}

const pgliteInstalled = async () => {
  try {
    await import("@electric-sql/pglite" as string)
    return true
  } catch {
    return false
  }
}

describe("lo-migrate demo", () => {
  it("seeds mixed sizes: small, medium, over --in-mem-max, and two multipart objects", () => {
    const sizes = demoSizes(2000)
    assert.strictEqual(sizes.length, 2000)
    assert.isTrue(sizes.slice(0, 2).every((s) => s > 5 * MiB))
    assert.isAbove(sizes.filter((s) => s < 8 * KiB).length, 1000)
    assert.isAbove(sizes.filter((s) => s > MiB && s < 5 * MiB).length, 0)
    assert.isTrue(demoSizes(50).every((s) => s < 5 * MiB), "no multipart objects in a tiny demo")
  })

  it.live("migrates, verifies every object, prints the summary and removes everything", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["demo", "--objects", "120", "--progress", "plain", "--postgres", "cluster"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.match(result.stdout, /^migrated 120 objects, \d+\.\d MiB in \d+\.\d s/m)
      assert.include(result.stdout, "verified 120 objects")
      assert.include(result.stdout, "What to try next:")
      assert.include(result.stderr, "(final stats)")
      assert.include(result.stderr, "demo finished")
      const { pg, s3 } = announcedDirs(result.stderr)
      assert.isDefined(pg, result.stderr)
      assert.isDefined(s3, result.stderr)
      assert.isFalse(NodeFs.existsSync(pg!), `${pg} removed`)
      assert.isFalse(NodeFs.existsSync(s3!), `${s3} removed`)
    }))

  it.live("--progress json keeps stdout to JSON events ending with the summary", () =>
    Effect.gen(function*() {
      const result = yield* runCli(["demo", "--objects", "30", "--progress", "json", "--postgres", "cluster"])
      assert.strictEqual(result.code, 0, result.stderr)
      const events = result.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      assert.deepInclude(events[events.length - 1], { event: "summary", outcome: "success", migrated: 30, failed: 0 })
    }))

  it.live("Ctrl-C stops the run, exits 130, and removes the cluster and the S3 data", () =>
    Effect.gen(function*() {
      let sent = false
      const result = yield* runCli(["demo", "--objects", "1500", "--progress", "plain", "--postgres", "cluster"], {
        onStart: (child, output) => {
          const timer = setInterval(() => {
            if (!sent && output.stderr().includes("row(s) to migrate")) {
              sent = true
              clearInterval(timer)
              child.kill("SIGINT")
            }
          }, 20)
          child.on("close", () => clearInterval(timer))
        }
      })
      assert.isTrue(sent, result.stderr)
      assert.strictEqual(result.code, 130, result.stderr)
      assert.include(result.stderr, "interrupted: embedded PostgreSQL and S3 stopped and removed")
      const { pg, s3 } = announcedDirs(result.stderr)
      assert.isFalse(NodeFs.existsSync(pg!), `${pg} removed`)
      assert.isFalse(NodeFs.existsSync(s3!), `${s3} removed`)
    }))

  // PGlite is an optional dependency that `npm ci` installs: the demo's fallback must work here
  it.live("--postgres pglite: runs the whole demo on PGlite (PostgreSQL in WASM, one connection)", () =>
    Effect.gen(function*() {
      assert.isTrue(yield* Effect.promise(pgliteInstalled), "npm ci installs the optional PGlite packages")
      const result = yield* runCli(["demo", "--objects", "20", "--progress", "plain", "--postgres", "pglite"])
      assert.strictEqual(result.code, 0, result.stderr)
      assert.include(result.stdout, "verified 20 objects")
    }))
})
