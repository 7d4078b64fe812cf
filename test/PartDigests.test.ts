// An object larger than one S3 part is hashed part by part as it is read (one MD5 pass, no pass over
// the temp file before each part): each part goes out with the MD5 of the bytes read from PostgreSQL,
// whatever the read chunk (here 3 MiB chunks against 5 MiB parts, so parts end inside chunks), also
// for a size that is an exact multiple of the part size. Real executable, PostgreSQL, s3rver behind a
// proxy that records the headers.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { runCli } from "./support/Cli.ts"
import { FaultProxy } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { partMd5s, sentPartMd5s } from "./support/Parts.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { assertAllMigrated, assertNoStrayKeys } from "./support/Verify.ts"

const MiB = 1024 * 1024
const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

describe("objects in parts: the parts' MD5s come from the read", () => {
  it.live("11 MiB + 3 and exactly 10 MiB, read in 3 MiB chunks, sent in 5 MiB parts: every part's Content-MD5 is the read bytes'; verify --deep passes", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = [
        yield* insertObject({ bytes: randomBytes(11 * MiB + 3, 71) }),
        yield* insertObject({ bytes: randomBytes(10 * MiB, 72) }),
        yield* insertObject({ bytes: randomBytes(5 * MiB, 73) }) // one part exactly: a single PUT
      ]
      const target = yield* targetVia(proxy.endpoint)
      const result = yield* runCli(["migrate", ...target, "--upload-chunk-size", "5120", "--read-chunk-size", "3072"])
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
      yield* assertNoStrayKeys
      const log = yield* proxy.log
      for (const o of objects.slice(0, 2)) {
        const sent = sentPartMd5s(log, (path) => path.includes(o.sha256!)).map(([, md5]) => md5)
        assert.deepStrictEqual(sent, partMd5s(o.bytes!, 5 * MiB), `${o.bytes!.length} bytes`)
      }
      const single = log.find((r) => r.method === "PUT" && r.path.includes(objects[2]!.sha256!) && !/partNumber=/.test(r.path))
      assert.strictEqual(single?.headers["content-md5"], createHash("md5").update(objects[2]!.bytes!).digest("base64"))
      const verified = yield* runCli(["verify", ...target, "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)
})
