// Checks shared by the reliability tests: what must hold after runs end, whatever happened in between.
import { assert } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import { DeleteObjectCommand } from "@aws-sdk/client-s3"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows, sha256Hex } from "./Nice2Fixture.ts"
import { runCli } from "./Cli.ts"
import { TestS3 } from "./S3.ts"
import { target } from "./Target.ts"

/** Every object's row has sha2 = SHA-256 of its bytes, and S3 holds exactly those bytes under that key. */
export const assertAllMigrated = (objects: ReadonlyArray<InsertedObject>) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    const rows = new Map((yield* readRows).map((r) => [r.hash, r]))
    for (const o of objects) {
      assert.strictEqual(rows.get(o.hash)?.sha2, o.sha256, `sha2 of ${o.hash}`)
      const stored = yield* s3.getObject(o.sha256!)
      assert.isTrue(Option.isSome(stored), `object ${o.sha256} in S3`)
      assert.strictEqual(sha256Hex(Option.getOrThrow(stored).bytes), o.sha256, `bytes of ${o.sha256}`)
    }
  })

/** No row is marked whose object is not in S3 with bytes hashing to its sha2. */
export const assertMarkedRowsBacked = Effect.gen(function*() {
  const s3 = yield* TestS3
  for (const row of yield* readRows) {
    if (row.sha2 === null) continue
    const stored = yield* s3.getObject(row.sha2)
    assert.isTrue(Option.isSome(stored), `row ${row.hash} is marked but ${row.sha2} is not in S3`)
    assert.strictEqual(sha256Hex(Option.getOrThrow(stored).bytes), row.sha2, `bytes under ${row.sha2}`)
  }
})

/** S3 holds no key that no row names. */
export const assertNoStrayKeys = Effect.gen(function*() {
  const named = new Set((yield* readRows).flatMap((r) => (r.sha2 === null ? [] : [r.sha2])))
  const stray = (yield* (yield* TestS3).listKeys()).filter((k) => !named.has(k))
  assert.deepStrictEqual(stray, [], "keys in S3 that no row names")
})

/** Nothing marked at all. */
export const assertNothingMarked = Effect.gen(function*() {
  const marked = (yield* readRows).filter((r) => r.sha2 !== null)
  assert.deepStrictEqual(marked.map((r) => r.hash), [], "rows marked")
})

export const freshTempDir = Effect.acquireRelease(
  Effect.sync(() => NodeFs.mkdtempSync(`${process.env.TMPDIR ?? "/tmp"}/lo-migrate-test-tmp-`)),
  (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
)

/** A plain rerun against the test servers, the faults gone: exit 0, every object migrated, no stray key. */
export const assertRerunFinishes = (objects: ReadonlyArray<InsertedObject>) =>
  Effect.gen(function*() {
    const rerun = yield* runCli(["migrate", ...(yield* target)])
    assert.strictEqual(rerun.code, 0, rerun.stderr)
    yield* assertAllMigrated(objects)
    yield* assertNoStrayKeys
  })

/** `n` objects (of `size(i)` bytes) migrated by the real migrate command, in key order. */
export const migratedObjects = (n: number, seed: number, size: (i: number) => number = (i) => 100 + i * 37) =>
  Effect.gen(function*() {
    yield* createNice2Schema()
    const objects: Array<InsertedObject> = []
    for (let i = 0; i < n; i++) objects.push(yield* insertObject({ bytes: randomBytes(size(i), seed + i) }))
    const result = yield* runCli(["migrate", ...(yield* target)])
    assert.strictEqual(result.code, 0, result.stderr)
    return objects.sort((a, b) => a.hash.localeCompare(b.hash))
  })

/** Removes `key` from the test bucket (a migrated object gone). */
export const deleteObject = (key: string) =>
  Effect.gen(function*() {
    const s3 = yield* TestS3
    yield* s3.use("DeleteObject", (c) => c.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key })))
  })
