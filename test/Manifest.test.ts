// The deferred mode's manifest format: every field round-trips through the TSV escaping, and readers
// take only complete lines (a torn last line, as a crash leaves it, is not read).
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fc from "fast-check"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Manifest from "../src/s3/Manifest.ts"
import { scopedTempDir } from "./support/TempDir.ts"

const entry = fc.record({
  stagedPath: fc.string({ minLength: 1 }),
  s3Key: fc.string({ minLength: 1 }),
  rowKey: fc.string({ minLength: 1 }),
  size: fc.nat(),
  sha256: fc.stringMatching(/^[0-9a-f]{64}$/),
  sha1: fc.string(),
  md5: fc.string(),
  contentType: fc.string(),
  oid: fc.option(fc.nat(), { nil: null })
})

describe("Manifest", () => {
  it("encodes one line per entry and decodes it back, whatever the fields hold (property)", () => {
    fc.assert(fc.property(entry, (e) => {
      const line = Manifest.encode(e)
      assert.isTrue(line.endsWith("\n"))
      assert.notInclude(line.slice(0, -1), "\n")
      assert.deepStrictEqual(Manifest.decode(line.slice(0, -1)), e)
    }), { numRuns: 300 })
  })

  it("says what is wrong with a malformed line", () => {
    assert.match(Manifest.decode("a\tb") as string, /has 2 fields, expected 9/)
    assert.match(Manifest.decode("p\tk\tr\tx\t" + "0".repeat(64) + "\t\t\t\t") as string, /size "x" is not a number/)
  })

  it.effect("reads complete lines only, numbered from the header, and refuses a foreign file", () =>
    Effect.gen(function*() {
      const dir = yield* scopedTempDir("manifest-")
      const path = NodePath.join(dir, "m.tsv")
      const e = { stagedPath: "/s/a", s3Key: "k", rowKey: "r", size: 3, sha256: "a".repeat(64), sha1: "", md5: "", contentType: "t", oid: 5 }
      NodeFs.writeFileSync(path, Manifest.header + Manifest.encode(e) + Manifest.encode({ ...e, rowKey: "r2" }) + "/s/torn\tk")
      const seen: Array<Manifest.Line> = []
      yield* Manifest.forEachLine(path, (line) => Effect.sync(() => seen.push(line)))
      assert.deepStrictEqual(seen.map((l) => [l.number, (l.entry as Manifest.Entry).rowKey]), [[2, "r"], [3, "r2"]])
      NodeFs.writeFileSync(path, "something else\n")
      const error = yield* Effect.flip(Manifest.forEachLine(path, () => Effect.void))
      assert.match(error.message, /line 1 is not the lo-migrate manifest header/)
      const missing = yield* Effect.flip(Manifest.forEachLine(NodePath.join(dir, "none.tsv"), () => Effect.void))
      assert.strictEqual(missing._tag, "ManifestError")
      assert.match((yield* Effect.flip(Manifest.checkHeader(path))).message, /line 1 is not the lo-migrate manifest header/)
      assert.match((yield* Effect.flip(Manifest.checkHeader(NodePath.join(dir, "none.tsv")))).message, /cannot be read \(ENOENT\)/)
      NodeFs.writeFileSync(path, Manifest.header)
      yield* Manifest.checkHeader(path)
    }))
})
