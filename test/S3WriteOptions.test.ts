// The S3 options of every object written (--storage-class, --sse, --sse-kms-key-id, --acl), end to end
// through the executable: a proxy in front of s3rver records the request headers, so every PutObject,
// CreateMultipartUpload and the pre-flight probe are shown to carry them exactly as given (and no
// UploadPart does), for migrate and upload-blobs; s3rver keeps the storage class (HEAD shows it); a
// value the server refuses fails the pre-flight (exit 2, the server's reason, nothing uploaded); SSE-KMS
// answers (no MD5 ETag, simulated by the proxy) are proven by the HEAD's size and sha256 metadata, and
// verify --deep still passes; bad values are refused before any work (exit 2).
import { HeadObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Result } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { validate } from "../src/domain/Settings.ts"
import { probeKey } from "../src/s3/S3Store.ts"
import { runCli } from "./support/Cli.ts"
import { FaultProxy, type ProxyRequestLog } from "./support/FaultProxy.ts"
import { createNice2Schema, insertObject, type InsertedObject, randomBytes, readRows } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { targetVia } from "./support/Target.ts"
import { scopedTempDir } from "./support/TempDir.ts"
import { assertAllMigrated, assertNothingMarked } from "./support/Verify.ts"

const KiB = 1024
const MiB = 1024 * KiB
const env = FaultProxy.layer.pipe(Layer.provideMerge(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)))

const viaProxy = Effect.flatMap(FaultProxy, (proxy) => targetVia(proxy.endpoint))

const kmsKey = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
const allOptions = {
  "x-amz-storage-class": "STANDARD_IA",
  "x-amz-server-side-encryption": "aws:kms",
  "x-amz-server-side-encryption-aws-kms-key-id": kmsKey,
  "x-amz-acl": "bucket-owner-full-control"
}
const allFlags = ["--storage-class", "STANDARD_IA", "--sse", "aws:kms", "--sse-kms-key-id", kmsKey, "--acl", "bucket-owner-full-control"]
const optionHeaders = Object.keys(allOptions)

/** 3 small objects, one above --in-mem-max 64 (a temp file), one of 6 MiB (two parts of 5 MiB). */
const insertMixed = (seed: number) =>
  Effect.gen(function*() {
    const out: Array<InsertedObject> = []
    for (let i = 0; i < 3; i++) out.push(yield* insertObject({ bytes: randomBytes(1000 + i, seed + i) }))
    out.push(yield* insertObject({ bytes: randomBytes(200 * KiB, seed + 10) }))
    out.push(yield* insertObject({ bytes: randomBytes(6 * MiB, seed + 11) }))
    return out
  })
const sizing = ["--in-mem-max", "64", "--upload-chunk-size", "5120"]

type Kind = "probe" | "put" | "create" | "part" | "other"
const kindOf = (entry: ProxyRequestLog): Kind => {
  const path = entry.path
  if (entry.method === "PUT" && path.includes("partNumber=")) return "part"
  if (entry.method === "PUT") return path.split("?")[0]!.endsWith(`/${probeKey}`) ? "probe" : "put"
  if (entry.method === "POST" && /[?&]uploads(=|&|$)/.test(path)) return "create"
  return "other"
}

/** The writes the proxy saw, by kind; each write's option headers (undefined when absent). */
const writes = Effect.gen(function*() {
  const log = yield* (yield* FaultProxy).log
  return log.map((entry) => ({
    kind: kindOf(entry),
    path: entry.path,
    options: Object.fromEntries(optionHeaders.map((h) => [h, entry.headers[h]]))
  }))
})

/** Every probe, PutObject and CreateMultipartUpload carried `expected` exactly; no UploadPart carried any. */
const assertWritesCarry = (expected: Readonly<Record<string, string | undefined>>, counts: { readonly put: number; readonly create: number }) =>
  Effect.gen(function*() {
    const seen = yield* writes
    const of = (kind: Kind) => seen.filter((w) => w.kind === kind)
    assert.strictEqual(of("probe").length, 1, "one probe PUT")
    assert.strictEqual(of("put").length, counts.put, "single PUTs")
    assert.strictEqual(of("create").length, counts.create, "CreateMultipartUploads")
    assert.isAbove(of("part").length, 0, "parts uploaded")
    const full = Object.fromEntries(optionHeaders.map((h) => [h, expected[h]]))
    for (const w of [...of("probe"), ...of("put"), ...of("create")]) assert.deepStrictEqual(w.options, full, `${w.kind} ${w.path}`)
    for (const w of of("part")) assert.deepStrictEqual(w.options, Object.fromEntries(optionHeaders.map((h) => [h, undefined])), `part ${w.path}`)
  })

const storageClassOf = (key: string) =>
  Effect.flatMap(TestS3, (s3) =>
    s3.use("HeadObject", (c, abortSignal) => c.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal }))).pipe(
      Effect.map((head) => head.StorageClass)
    )

describe("S3 object options", () => {
  it.live("migrate: the probe, every PUT and CreateMultipartUpload carry them as given; s3rver keeps the storage class; verify --deep passes", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      const objects = yield* insertMixed(1)
      const run = yield* runCli(["migrate", ...(yield* viaProxy), ...sizing, ...allFlags])
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "migrated 5 object(s)")
      assert.include(run.stderr, `object options:    ${allFlags.join(" ")}`)
      yield* assertWritesCarry(allOptions, { put: 4, create: 1 })
      yield* assertAllMigrated(objects)
      for (const o of objects) assert.strictEqual(yield* storageClassOf(o.sha256!), "STANDARD_IA", `storage class of ${o.size} bytes`)
      const verified = yield* runCli(["verify", ...(yield* viaProxy), "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "5 good, 0 bad")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("without the flags no option header is sent (the bucket's defaults apply)", () =>
    Effect.gen(function*() {
      yield* createNice2Schema()
      yield* insertMixed(20)
      const run = yield* runCli(["migrate", ...(yield* viaProxy), ...sizing])
      assert.strictEqual(run.code, 0, run.stderr)
      assert.notInclude(run.stderr, "object options:")
      yield* assertWritesCarry({}, { put: 4, create: 1 })
      const objects = (yield* readRows).map((r) => r.sha2!)
      // s3rver, like AWS S3, names no class for an object of the default one (STANDARD)
      for (const key of objects) assert.strictEqual(yield* storageClassOf(key), undefined)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("upload-blobs carries them (from flags, the environment and --config); the staging run says where they apply", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const objects = yield* insertMixed(40)
      const dir = yield* scopedTempDir("s3opts-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staged = yield* runCli(["migrate", ...(yield* viaProxy), ...sizing, "--deferred-blobs", manifest, "--storage-class", "ONEZONE_IA"])
      assert.strictEqual(staged.code, 0, staged.stderr)
      assert.include(staged.stderr, "S3 is not contacted (--storage-class ONEZONE_IA: give them to upload-blobs, which writes the objects)")
      assert.deepStrictEqual(yield* proxy.log, [], "the staging run made no S3 request")
      const config = NodePath.join(dir, "lo-migrate.json")
      NodeFs.writeFileSync(config, JSON.stringify({ acl: "bucket-owner-read" }))
      const up = yield* runCli(
        ["upload-blobs", manifest, ...(yield* viaProxy), "--upload-chunk-size", "5120", "--sse", "AES256", "--config", config],
        { env: { LO_MIGRATE_STORAGE_CLASS: "ONEZONE_IA" } }
      )
      assert.strictEqual(up.code, 0, up.stderr)
      assert.include(up.stdout, "uploaded 5 object(s)")
      yield* assertWritesCarry({
        "x-amz-storage-class": "ONEZONE_IA",
        "x-amz-server-side-encryption": "AES256",
        "x-amz-acl": "bucket-owner-read"
      }, { put: 4, create: 1 })
      yield* assertAllMigrated(objects)
      for (const o of objects) assert.strictEqual(yield* storageClassOf(o.sha256!), "ONEZONE_IA")
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("SSE-KMS answers (no MD5 ETag): each object is proven by its HEAD's size and sha256 metadata; without the metadata nothing is marked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const objects = yield* insertMixed(60)
      yield* proxy.setRules([{ name: "kms", method: "PUT", fault: { kind: "sseKms" } }, { name: "kms", method: "POST", fault: { kind: "sseKms" } }, {
        name: "kms",
        method: "HEAD",
        fault: { kind: "sseKms", dropHeader: "x-amz-meta-sha256" }
      }])
      // a HEAD without the sha256 metadata proves nothing: every upload fails its confirmation
      const unproven = yield* runCli(["migrate", ...(yield* viaProxy), ...sizing, "--sse", "aws:kms", "--retries", "2"])
      assert.strictEqual(unproven.code, 1, unproven.stderr)
      assert.include(unproven.stderr, "does not carry this object's sha256 metadata")
      yield* assertNothingMarked
      yield* proxy.setRules([{ name: "kms", method: "PUT", fault: { kind: "sseKms" } }, { name: "kms", method: "POST", fault: { kind: "sseKms" } }, {
        name: "kms",
        method: "HEAD",
        fault: { kind: "sseKms" }
      }])
      const before = (yield* proxy.log).length
      const run = yield* runCli(["migrate", ...(yield* viaProxy), ...sizing, "--sse", "aws:kms"])
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "migrated 5 object(s)")
      const heads = (yield* proxy.log).slice(before).filter((e) => e.method === "HEAD" && !e.path.includes(probeKey))
      assert.isAtLeast(heads.length, 5, "each object confirmed by a HEAD")
      yield* assertAllMigrated(objects)
      const verified = yield* runCli(["verify", ...(yield* viaProxy), "--deep"])
      assert.strictEqual(verified.code, 0, verified.stderr)
      assert.include(verified.stdout, "5 good, 0 bad")
    }).pipe(Effect.scoped, Effect.provide(env)), 180_000)

  it.live("SSE-KMS: a CompleteMultipartUpload whose answer is lost is recovered by the HEAD's size and sha256 metadata", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      const objects = [yield* insertObject({ bytes: randomBytes(6 * MiB, 70) })]
      yield* proxy.setRules([
        // the server assembles the object, the client never hears: the retried Complete finds no upload
        { name: "lost", method: "POST", path: /[?&]uploadId=/, count: 1, fault: { kind: "reset", when: "after" } },
        { name: "kms", method: "PUT", fault: { kind: "sseKms" } },
        { name: "kms", method: "POST", fault: { kind: "sseKms" } },
        { name: "kms", method: "HEAD", fault: { kind: "sseKms" } }
      ])
      // s3rver answers the retried Complete 500 InternalError: --retries 3 ends those retries soon
      const run = yield* runCli(["migrate", ...(yield* viaProxy), "--upload-chunk-size", "5120", "--sse", "aws:kms", "--retries", "3"])
      assert.strictEqual(yield* proxy.fired("lost"), 1)
      assert.strictEqual(run.code, 0, run.stderr)
      assert.include(run.stdout, "migrated 1 object(s)")
      yield* assertAllMigrated(objects)
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("a value the server refuses fails the pre-flight: exit 2 with the server's reason, nothing uploaded or marked", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      const s3 = yield* TestS3
      yield* createNice2Schema()
      yield* insertMixed(80)
      // s3rver itself knows no GLACIER_IR
      const glacier = yield* runCli(["migrate", ...(yield* viaProxy), "--storage-class", "GLACIER_IR"])
      assert.strictEqual(glacier.code, 2, glacier.stderr)
      assert.include(glacier.stderr, "refuses an object written with --storage-class GLACIER_IR")
      assert.include(glacier.stderr, "InvalidStorageClass")
      assert.include(glacier.stderr, "The storage class you specified is not valid")
      // a server without SSE-S3, and one whose bucket refuses ACLs (S3 Object Ownership "bucket owner enforced")
      yield* proxy.setRules([
        {
          name: "no-sse",
          method: "PUT",
          header: { name: "x-amz-server-side-encryption", value: "AES256" },
          fault: { kind: "status", status: 400, code: "InvalidArgument", message: "Server Side Encryption with AES256 is not supported" }
        },
        {
          name: "no-acl",
          method: "PUT",
          header: { name: "x-amz-acl", value: "public-read" },
          fault: { kind: "status", status: 400, code: "AccessControlListNotSupported", message: "The bucket does not allow ACLs" }
        }
      ])
      const sse = yield* runCli(["migrate", ...(yield* viaProxy), "--sse", "AES256"])
      assert.strictEqual(sse.code, 2, sse.stderr)
      assert.include(sse.stderr, "refuses an object written with --sse AES256")
      assert.include(sse.stderr, "InvalidArgument")
      assert.include(sse.stderr, "Server Side Encryption with AES256 is not supported")
      const dir = yield* scopedTempDir("s3opts-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      const staged = yield* runCli(["migrate", ...(yield* viaProxy), "--deferred-blobs", manifest])
      assert.strictEqual(staged.code, 0, staged.stderr)
      const acl = yield* runCli(["upload-blobs", manifest, ...(yield* viaProxy), "--acl", "public-read"])
      assert.strictEqual(acl.code, 2, acl.stderr)
      assert.include(acl.stderr, "refuses an object written with --acl public-read")
      assert.include(acl.stderr, "AccessControlListNotSupported")
      assert.include(acl.stderr, "The bucket does not allow ACLs")
      assert.strictEqual(yield* proxy.fired("no-sse"), 1)
      assert.strictEqual(yield* proxy.fired("no-acl"), 1)
      // only the probes were tried: no object PUT, no multipart upload
      assert.deepStrictEqual((yield* writes).filter((w) => w.kind !== "probe" && w.kind !== "other"), [])
      assert.deepStrictEqual(yield* s3.listKeys(), [])
      yield* assertNothingMarked
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.live("bad values are refused before any work (exit 2), for migrate and upload-blobs, from flags and the environment", () =>
    Effect.gen(function*() {
      const proxy = yield* FaultProxy
      yield* createNice2Schema()
      yield* insertMixed(100)
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, Record<string, string>, string]> = [
        [["--sse", "aes256"], {}, `--sse: "aes256" is not one of AES256, aws:kms`],
        [["--sse", "aws:kms:dsse"], {}, `--sse: "aws:kms:dsse" is not one of AES256, aws:kms`],
        [["--sse-kms-key-id", kmsKey], {}, "--sse-kms-key-id: is only valid with --sse aws:kms"],
        [["--sse", "AES256", "--sse-kms-key-id", kmsKey], {}, "--sse-kms-key-id: is only valid with --sse aws:kms"],
        [["--acl", "public"], {}, `--acl: "public" is not a canned ACL (private, public-read, public-read-write, authenticated-read, aws-exec-read, bucket-owner-read, bucket-owner-full-control)`],
        [["--storage-class", "STANDARD IA"], {}, `--storage-class: "STANDARD IA" is not a storage class name`],
        // from the environment: the message names the variable
        [[], { LO_MIGRATE_SSE: "kms" }, `--sse (from LO_MIGRATE_SSE): "kms" is not one of AES256, aws:kms`],
        [[], { LO_MIGRATE_ACL: "owner" }, `--acl (from LO_MIGRATE_ACL): "owner" is not a canned ACL`]
      ]
      const dir = yield* scopedTempDir("s3opts-")
      const manifest = NodePath.join(dir, "blobs.tsv")
      NodeFs.writeFileSync(manifest, "")
      for (const [i, [flags, environment, message]] of cases.entries()) {
        // every case with migrate; every other one with upload-blobs too (the same validation, slower to run all)
        for (const command of i % 2 === 0 ? [["migrate"], ["upload-blobs", manifest]] : [["migrate"]]) {
          const result = yield* runCli([...command, ...(yield* viaProxy), ...flags], { env: environment })
          assert.strictEqual(result.code, 2, `${command[0]} ${flags.join(" ")}: ${result.stderr}`)
          assert.include(result.stderr, message, `${command[0]} ${flags.join(" ")}`)
        }
      }
      assert.deepStrictEqual(yield* proxy.log, [], "no S3 request")
      yield* assertNothingMarked
    }).pipe(Effect.scoped, Effect.provide(env)), 120_000)

  it.effect("the library API validates them as the CLI does", () =>
    Effect.gen(function*() {
      const base = { pgUrl: "postgresql://u:p@localhost/db", bucket: "some-bucket" }
      const ok = yield* validate({ ...base, storageClass: " GLACIER_IR ", sse: "aws:kms", sseKmsKeyId: "alias/backup", acl: "private" })
      assert.deepStrictEqual(ok.s3Write, { storageClass: "GLACIER_IR", sse: "aws:kms", sseKmsKeyId: "alias/backup", acl: "private" })
      const none = yield* validate(base)
      assert.deepStrictEqual(none.s3Write, { storageClass: undefined, sse: undefined, sseKmsKeyId: undefined, acl: undefined })
      const refused = yield* Effect.result(validate({ ...base, sseKmsKeyId: "alias/backup" }))
      assert.isTrue(Result.isFailure(refused))
      if (Result.isFailure(refused)) assert.strictEqual(refused.failure.setting, "--sse-kms-key-id")
    }))
})
