// A run that ends with exit 1 after printing more than a pipe holds (64 KiB) must still deliver every
// line: process.exit drops what stderr has not handed to the pipe yet, so bin.ts exits only once
// stdout and stderr are flushed. The reader here stops reading for a while, as a busy log collector
// (or a loaded CI machine) does.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Manifest from "../src/s3/Manifest.ts"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { target } from "./support/Target.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

describe("exit after much output", () => {
  it.live("every FAILED line reaches a slow reader, although the run exits with 1", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const dir = yield* scopedTempDir("flush-")
      const manifest = NodePath.join(dir, "m.tsv")
      const lines = 600
      // each line is malformed: a failure each, logged and listed (about 200 bytes of stderr a line)
      NodeFs.writeFileSync(manifest, Manifest.header + Array.from({ length: lines }, (_, i) => `not a manifest line ${i}\n`).join(""))
      const result = yield* runCli(["upload-blobs", manifest, ...(yield* target)], {
        onStart: (child) => {
          child.stderr!.pause()
          setTimeout(() => child.stderr!.resume(), 3000)
        }
      })
      assert.strictEqual(result.code, 1, result.stderr.slice(-2000))
      assert.include(result.stdout, `${lines} failed`)
      const failed = result.stderr.split("\n").filter((l) => l.startsWith("FAILED manifest line "))
      assert.isAbove(result.stderr.length, 64 * 1024, "more than a pipe holds")
      assert.lengthOf(failed, lines)
      assert.include(failed[lines - 1]!, `manifest line ${lines + 1} has 1 fields`)
    }).pipe(Effect.scoped, Effect.provide(env)))
})
