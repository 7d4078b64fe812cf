// Reading large objects: chunked lo_get whatever the chunk boundaries, the three digests in one pass,
// and the checks that turn a bad row into a named failure instead of an error.
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import type { Candidate, Received } from "../src/domain/LargeObject.ts"
import { isSha1Hex, objectKey } from "../src/domain/LargeObject.ts"
import * as Receiver from "../src/migrate/Receiver.ts"
import { defaultPolicy } from "../src/core/Retry.ts"
import { Stats } from "../src/core/Stats.ts"
import * as LargeObjects from "../src/postgres/LargeObjects.ts"
import { createLargeObject, randomBytes, sha1Hex } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"

const candidateFor = (oid: number | null, bytes: Uint8Array, overrides: Partial<Candidate> = {}): Candidate => ({
  key: sha1Hex(bytes),
  oid,
  size: bytes.length,
  contentType: "application/octet-stream",
  expectedSha1: sha1Hex(bytes),
  ...overrides
})

layer(Layer.mergeAll(TestDatabase.layerClient, Stats.layer), { excludeTestServices: true })("Receiver", (it) => {
  const receive = (candidate: Candidate, inMemMax = 1024, readChunkSize = 2 * 1024 * 1024) =>
    Effect.gen(function*() {
      const runScope = yield* Effect.scope
      return yield* Receiver.receive(candidate, { inMemMax, readChunkSize, tempDir: "/tmp", retry: defaultPolicy(2), runScope })
    })

  it.effect("LargeObjects.read returns every byte whatever the chunk size, ending on a short chunk", () =>
    Effect.gen(function*() {
      const data = randomBytes(2500, 1)
      const oid = yield* createLargeObject(data)
      for (const chunkSize of [1, 999, 1000, 2500, 2501, 8 * 1024 * 1024]) {
        const chunks: Array<Uint8Array> = []
        const size = yield* LargeObjects.read(oid, (c) => Effect.sync(() => chunks.push(c)), chunkSize)
        assert.strictEqual(size, 2500)
        assert.strictEqual(Buffer.compare(Buffer.concat(chunks), Buffer.from(data)), 0, `chunk size ${chunkSize}`)
      }
      const empty = yield* createLargeObject(new Uint8Array(0))
      assert.strictEqual(yield* LargeObjects.read(empty, () => Effect.void), 0)
    }))

  it.effect("reads a batch whose oids straddle 2^31 (oids are unsigned 32-bit)", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const low = randomBytes(100, 21)
      const high = randomBytes(200, 22)
      const lowOid = yield* createLargeObject(low)
      const highOid = 3_000_000_000 + (lowOid % 1000)
      yield* sql`SELECT lo_from_bytea(${highOid}, ${high})`
      const chunks = yield* LargeObjects.readMany([{ oid: lowOid, cap: 1000 }, { oid: highOid, cap: 1000 }])
      assert.strictEqual(Buffer.compare(Buffer.from(chunks[0]!), Buffer.from(low)), 0)
      assert.strictEqual(Buffer.compare(Buffer.from(chunks[1]!), Buffer.from(high)), 0)
      // a dangling high oid in a batch is the server's "does not exist", not a driver encoding error
      const error = yield* Effect.flip(LargeObjects.readMany([{ oid: lowOid, cap: 10 }, { oid: 4_000_000_000, cap: 10 }]))
      assert.strictEqual(LargeObjects.sqlState(error), LargeObjects.undefinedObject)
    }))

  it.effect("computes SHA-1, SHA-256 and MD5 in one pass, in memory or in a temp file", () =>
    Effect.gen(function*() {
      // --read-chunk-size: the bytes and digests do not depend on how many statements read them
      for (const [size, location, chunk] of [[100, "memory", 64], [5000, "file", 2 * 1024 * 1024], [5000, "file", 1000]] as const) {
        const data = randomBytes(size, size)
        const result = yield* receive(candidateFor(yield* createLargeObject(data), data), 1024, chunk)
        assert.isTrue(Result.isSuccess(result))
        const received = (result as Result.Success<Received, never>).success
        assert.strictEqual(received.digests.sha1, createHash("sha1").update(data).digest("hex"))
        assert.strictEqual(received.digests.sha256, createHash("sha256").update(data).digest("hex"))
        assert.strictEqual(received.digests.md5, createHash("md5").update(data).digest("base64"))
        assert.strictEqual(received.payload.location, location)
        assert.strictEqual(Buffer.compare(Buffer.from(yield* received.payload.read(0, size)), Buffer.from(data)), 0)
        yield* received.payload.release
      }
    }))

  it.effect("a size or SHA-1 mismatch, a missing object and NULL data are failures that name the reason", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const data = randomBytes(300, 9)
      const oid = yield* createLargeObject(data)
      const reason = (r: Result.Result<unknown, { readonly reason: string }>) => Result.isFailure(r) ? r.failure.reason : "ok"
      assert.strictEqual(reason(yield* receive(candidateFor(oid, data, { size: 299 }))), "size-mismatch")
      assert.strictEqual(reason(yield* receive(candidateFor(oid, data, { expectedSha1: "0".repeat(40) }))), "sha1-mismatch")
      assert.strictEqual(reason(yield* receive(candidateFor(null, data))), "null-data")
      const gone = yield* createLargeObject(data)
      yield* sql`SELECT lo_unlink(${gone})`
      assert.strictEqual(reason(yield* receive(candidateFor(gone, data))), "missing-object")
      // upper-case keys are accepted: the comparison is on the lowercase digest
      assert.strictEqual(reason(yield* receive(candidateFor(oid, data, { key: sha1Hex(data).toUpperCase() }))), "ok")
    }))
})

describe("keys", () => {
  it("a Nice2 key is 40 hex digits in either case; the S3 key is the SHA-256 hex", () => {
    assert.isTrue(isSha1Hex("0123456789abcdef0123456789ABCDEF01234567"))
    assert.isFalse(isSha1Hex("0123456789abcdef0123456789abcdef0123456"))
    assert.isFalse(isSha1Hex("0123456789abcdef0123456789abcdef0123456 "))
    assert.isFalse(isSha1Hex("g123456789abcdef0123456789abcdef01234567"))
    assert.strictEqual(objectKey("ab".repeat(32)), "ab".repeat(32))
  })
})
