// Payloads: memory up to in-mem-max, a private temp file above it, and the temp file gone after
// release, after a failed read, and when the run's scope closes (failure or interruption).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodeFsP from "node:fs/promises"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as Payload from "../src/core/Payload.ts"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-payload-"))),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff)

describe("Payload", () => {
  it.effect("keeps objects up to in-mem-max in memory, and serves reads at any offset", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const parent = yield* Effect.scope
      const writer = yield* Payload.open({ expectedSize: 100, inMemMax: 100, tempDir: dir, parent })
      yield* writer.write(bytes(60))
      yield* writer.write(bytes(40, 7))
      const payload = yield* writer.seal
      assert.strictEqual(payload.location, "memory")
      assert.strictEqual(payload.size, 100)
      const all = Buffer.concat([bytes(60), bytes(40, 7)])
      assert.deepStrictEqual(Buffer.from(yield* payload.read(50, 30)), all.subarray(50, 80))
      assert.deepStrictEqual(NodeFs.readdirSync(dir), [])
    }))

  it.effect("stages larger objects in a private temp file, removed on release", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const parent = yield* Effect.scope
      const writer = yield* Payload.open({ expectedSize: 101, inMemMax: 100, tempDir: dir, parent })
      const data = bytes(3000)
      for (let i = 0; i < 3000; i += 1000) yield* writer.write(data.subarray(i, i + 1000))
      const payload = yield* writer.seal
      assert.strictEqual(payload.location, "file")
      const [file] = NodeFs.readdirSync(dir)
      assert.match(file!, /^lo_migrate\./)
      assert.strictEqual(NodeFs.statSync(NodePath.join(dir, file!)).mode & 0o777, 0o600)
      assert.deepStrictEqual(Buffer.from(yield* payload.read(999, 1002)), Buffer.from(data.subarray(999, 2001)))
      assert.deepStrictEqual(Buffer.from(yield* payload.read(2500, 1000)), Buffer.from(data.subarray(2500)))
      yield* payload.release
      yield* payload.release // idempotent
      assert.deepStrictEqual(NodeFs.readdirSync(dir), [])
    }))

  it.effect("an abandoned writer (failed read) removes its temp file", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const parent = yield* Effect.scope
      const writer = yield* Payload.open({ expectedSize: 10_000, inMemMax: 0, tempDir: dir, parent })
      yield* writer.write(bytes(10))
      assert.strictEqual(NodeFs.readdirSync(dir).length, 1)
      yield* writer.release
      assert.deepStrictEqual(NodeFs.readdirSync(dir), [])
    }))

  it.effect("closing the run's scope (failure or interruption) removes every temp file still open", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const run = yield* Scope.make()
      for (let i = 0; i < 5; i++) {
        const writer = yield* Payload.open({ expectedSize: 10, inMemMax: 0, tempDir: dir, parent: run })
        yield* writer.write(bytes(10, i))
        yield* writer.seal
      }
      assert.strictEqual(NodeFs.readdirSync(dir).length, 5)
      yield* Scope.close(run, Exit.interrupt(0))
      assert.deepStrictEqual(NodeFs.readdirSync(dir), [])
    }))

  it.effect("an empty file payload (a 0-byte staged object) gives an empty body; zero-length ranges stream nothing", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const file = (name: string, data: Uint8Array) =>
        Effect.acquireRelease(
          Effect.promise(() => {
            NodeFs.writeFileSync(NodePath.join(dir, name), data)
            return NodeFsP.open(NodePath.join(dir, name), "r")
          }),
          (h) => Effect.promise(() => h.close())
        )
      // what a storer sends: a fresh stream when the payload offers one, else the bytes
      const body = (payload: Payload.Payload, offset: number, length: number) =>
        payload.stream !== undefined
          ? Effect.promise(async () => {
            const chunks: Array<Buffer> = []
            for await (const chunk of payload.stream!(offset, length)) chunks.push(chunk as Buffer)
            return Buffer.concat(chunks)
          })
          : payload.read(offset, length)
      const empty = Payload.fromFile({ path: "empty", handle: yield* file("empty", new Uint8Array(0)), size: 0, release: Effect.void })
      assert.strictEqual((yield* body(empty, 0, 0)).length, 0)
      const ten = Payload.fromFile({ path: "ten", handle: yield* file("ten", bytes(10)), size: 10, release: Effect.void })
      assert.strictEqual((yield* body(ten, 10, 0)).length, 0)
      assert.deepStrictEqual(Buffer.from(yield* body(ten, 4, 100)), Buffer.from(bytes(10).subarray(4)))
    }))

  it.effect("a temp directory that does not exist is a PayloadError naming the path", () =>
    Effect.gen(function*() {
      const parent = yield* Effect.scope
      const error = yield* Effect.flip(
        Payload.open({ expectedSize: 10, inMemMax: 0, tempDir: "/nonexistent/lo-migrate-dir", parent })
      )
      assert.strictEqual(error._tag, "PayloadError")
      assert.include(error.message, "/nonexistent/lo-migrate-dir/lo_migrate.")
    }))
})
