// The S3 object options against a real Ceph RGW 16: --storage-class STANDARD and --acl private are
// accepted on single PUTs, multipart uploads and the probe; HEAD shows the class (of single PUTs), the
// object's ACL grants its owner alone; verify --deep passes; a class the zone group does not define
// (GLACIER_IR) is refused by the probe with RGW's InvalidArgument (exit 2). What RGW does with the other
// values is in the table of S3 servers (docs/s3-servers.md).
import { GetObjectAclCommand, HeadObjectCommand } from "@aws-sdk/client-s3"
import { assert, beforeAll, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { runCli } from "../support/Cli.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes } from "../support/Nice2Fixture.ts"
import { TestDatabase } from "../support/Postgres.ts"
import { awaitRgw, describeRgw, TestRgw } from "../support/Rgw.ts"
import { TestS3 } from "../support/S3.ts"
import { target } from "../support/Target.ts"
import { assertAllMigrated } from "../support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB
const env = Layer.mergeAll(TestDatabase.layerClient, TestRgw.layer)

describeRgw("against Ceph RGW: S3 object options", () => {
  beforeAll(async () => {
    await awaitRgw()
  }, 200_000)

  it.live("--storage-class STANDARD --acl private: accepted, HEAD shows the class, the ACL grants the owner alone; verify --deep", () =>
    Effect.gen(function*() {
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 3; i++) objects.push(yield* insertObject({ bytes: randomBytes(500 + i, 700 + i) }))
      objects.push(yield* insertObject({ bytes: randomBytes(6 * MiB, 710) }))
      const run = yield* runCli(["migrate", ...(yield* target), "--upload-chunk-size", "5120", "--storage-class", "STANDARD", "--acl", "private"])
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "migrated 4 object(s)")
      yield* assertAllMigrated(objects)
      const owner = { Type: "CanonicalUser" as const, DisplayName: "lo-migrate", ID: "lo-migrate" }
      for (const o of objects) {
        const key = o.sha256!
        const head = yield* s3.use("HeadObject", (c, abortSignal) => c.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal }))
        // RGW 16 names the class of a single PUT's object; a multipart object's HEAD names none
        if (o.size < 5 * MiB) assert.strictEqual(head.StorageClass, "STANDARD", `storage class of ${o.size} bytes`)
        const acl = yield* s3.use("GetObjectAcl", (c, abortSignal) => c.send(new GetObjectAclCommand({ Bucket: s3.bucket, Key: key }), { abortSignal }))
        assert.deepStrictEqual(acl.Grants, [{ Grantee: owner, Permission: "FULL_CONTROL" }], `ACL of ${o.size} bytes`)
      }
      const verified = yield* runCli(["verify", ...(yield* target), "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "4 good, 0 bad")
      // a class the zone group's placement does not define: refused by the probe, nothing written
      yield* insertObject({ bytes: randomBytes(300, 720) })
      const refused = yield* runCli(["migrate", ...(yield* target), "--storage-class", "GLACIER_IR"])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, "refuses an object written with --storage-class GLACIER_IR: InvalidArgument")
      assert.strictEqual((yield* s3.listKeys()).length, 4)
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)
})
