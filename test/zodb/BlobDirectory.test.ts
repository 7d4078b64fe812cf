// Blob files of a FileStorage: every blob record of the fixture (class ZODB.blob.Blob) has its file, with
// the size and sha256 of expected/filestorage-blobs.jsonl, in the bushy layout ZODB made; lawn paths and
// ZODB's layout detection; a missing file is named.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result, Stream } from "effect"
import { createHash } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as BlobDirectory from "../../src/zodb/sources/BlobDirectory.ts"
import * as FileStorage from "../../src/zodb/sources/FileStorage.ts"
import { hex16 } from "../../src/zodb/sources/FileStorageErrors.ts"
import { scopedTempDir } from "../support/TempDir.ts"
import { fixturesDir } from "./support/Fixtures.ts"

const fixtures = fixturesDir
const blobsDir = `${fixtures}/filestorage/blobs`

const jsonl = <A>(path: string): Array<A> =>
  NodeFs.readFileSync(path, "utf8").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as A)

interface BlobRow {
  readonly zoid: string
  readonly tid: string
  readonly size: number
  readonly sha256: string
}

const sha256 = (path: string) => createHash("sha256").update(NodeFs.readFileSync(path)).digest("hex")

describe("BlobDirectory", () => {
  it.effect("every blob record of filestorage/Data.fs has its file, with the expected size and sha256", () =>
    Effect.gen(function*() {
      const dir = yield* BlobDirectory.open(blobsDir)
      assert.deepStrictEqual(dir, { path: blobsDir, layout: "bushy", layoutFrom: "marker" })
      const rows = jsonl<BlobRow>(`${fixtures}/expected/filestorage-blobs.jsonl`)
      // the records the codec will call blobs: class ZODB.blob.Blob, with data
      const blobRecords = new Set(
        jsonl<{ tid: string; zoid: string; class_mod: string | null; class_name: string | null }>(
          `${fixtures}/expected/filestorage.jsonl`
        ).filter((r) => r.class_mod === "ZODB.blob" && r.class_name === "Blob").map((r) => `${r.zoid}@${r.tid}`)
      )
      assert.deepStrictEqual(new Set(rows.map((r) => `${r.zoid}@${r.tid}`)), blobRecords)
      const records = (yield* Stream.runCollect(FileStorage.transactions(`${fixtures}/filestorage/Data.fs`)))
        .flatMap((t) => t.records)
        .filter((r) => blobRecords.has(`${hex16(r.oid)}@${hex16(r.tid)}`))
      assert.strictEqual(records.length, rows.length)
      for (const r of records) {
        const row = rows.find((x) => x.zoid === hex16(r.oid) && x.tid === hex16(r.tid))!
        const found = yield* BlobDirectory.findBlob(dir, r.oid, r.tid, r.dataTid)
        // the undo record ("undo second revision of small") has a file of its own: ZODB copied it
        assert.strictEqual(found.fileTid, r.tid)
        assert.deepStrictEqual([found.size, sha256(found.path)], [row.size, row.sha256], `${row.zoid}@${row.tid}`)
      }
    }))

  it("paths: bushy one directory per oid byte, lawn one per oid, tids as ZODB's tid_repr", () => {
    const bushy: BlobDirectory.BlobDirectory = { path: "/b", layout: "bushy", layoutFrom: "marker" }
    const lawn: BlobDirectory.BlobDirectory = { path: "/b", layout: "lawn", layoutFrom: "marker" }
    assert.strictEqual(
      BlobDirectory.blobPath(bushy, 0x12bn, 0x040d69f33340af33n),
      "/b/0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x2b/0x040d69f33340af33.blob"
    )
    assert.strictEqual(BlobDirectory.blobPath(lawn, 0x12bn, 0x040d69f33340af33n), "/b/0x012b/0x040d69f33340af33.blob")
    assert.deepStrictEqual(
      [0n, 1n, 0xffn, 0x100n, 0xffffffffffffffffn].map(BlobDirectory.idRepr),
      ["0x00", "0x01", "0xff", "0x0100", "0xffffffffffffffff"]
    )
  })

  it.effect("layout detection without .layout follows ZODB: any non-hidden entry means lawn; a bad marker is refused", () =>
    Effect.gen(function*() {
      const base = yield* scopedTempDir("blobs-")
      const make = (name: string, entries: Record<string, string | null>) => {
        const d = NodePath.join(base, name)
        NodeFs.mkdirSync(d)
        for (const [entry, content] of Object.entries(entries)) {
          if (content === null) NodeFs.mkdirSync(NodePath.join(d, entry))
          else NodeFs.writeFileSync(NodePath.join(d, entry), content)
        }
        return d
      }
      const layoutOf = (d: string) => Effect.map(BlobDirectory.open(d), (b) => [b.layout, b.layoutFrom])
      assert.deepStrictEqual(yield* layoutOf(make("empty", {})), ["bushy", "detected"])
      assert.deepStrictEqual(yield* layoutOf(make("hidden", { ".lock": "" })), ["bushy", "detected"])
      assert.deepStrictEqual(yield* layoutOf(make("old", { "0x012b": null })), ["lawn", "detected"])
      assert.deepStrictEqual(yield* layoutOf(make("marked", { ".layout": "lawn\n", "0x00": null })), ["lawn", "marker"])
      const bad = yield* Effect.result(BlobDirectory.open(make("bad", { ".layout": "flat" })))
      assert.isTrue(Result.isFailure(bad))
      if (Result.isFailure(bad)) assert.match(bad.failure.message, /\.layout names the layout "flat"/)
      const missing = yield* Effect.result(BlobDirectory.open(NodePath.join(base, "nope")))
      assert.isTrue(Result.isFailure(missing) && missing.failure.problem === "does not exist")
    }))

  it.effect("a missing blob file is named (oid, tid, path); an undo record without its copy falls back to the revision it restores", () =>
    Effect.gen(function*() {
      const base = yield* scopedTempDir("blobs-copy-")
      const copy = NodePath.join(base, "blobs")
      NodeFs.cpSync(blobsDir, copy, { recursive: true })
      // the fixture is read-only; the copy must be writable to remove a file (and the scope's cleanup)
      const writable = (d: string): void => {
        NodeFs.chmodSync(d, 0o755)
        for (const e of NodeFs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) writable(NodePath.join(d, e.name))
      }
      writable(copy)
      const dir = yield* BlobDirectory.open(copy)
      const [oid, undoTid, originalTid] = [0x12bn, 0x040d69f333ddc377n, 0x040d69f33340af33n]
      const undoFile = BlobDirectory.blobPath(dir, oid, undoTid)
      NodeFs.rmSync(undoFile)
      const found = yield* BlobDirectory.findBlob(dir, oid, undoTid, originalTid)
      assert.deepStrictEqual([found.fileTid, found.size], [originalTid, 1000])
      const missing = yield* Effect.result(BlobDirectory.findBlob(dir, oid, undoTid))
      assert.isTrue(Result.isFailure(missing))
      if (Result.isFailure(missing)) {
        assert.strictEqual(missing.failure._tag, "BlobFileMissing")
        assert.strictEqual(
          missing.failure.message,
          `blob of oid 000000000000012b at transaction 040d69f333ddc377 has no file: expected ${undoFile}`
        )
      }
      const absent = yield* Effect.result(BlobDirectory.findBlob(dir, 0x999n, undoTid, originalTid))
      assert.isTrue(Result.isFailure(absent) && absent.failure.message.includes("(nor at "))
    }))
})
