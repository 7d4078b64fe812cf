// The tests' side of the real Ceph RGW that `rgwSetup.ts` starts once per run (CephRgw.ts).
//
// `TestRgw.layer` provides `TestS3` (the same service the s3rver tests use, so Target.ts, Verify.ts and
// FaultProxy.ts work unchanged) on a fresh bucket of the run's RGW; the bucket is emptied and deleted
// when the layer's scope closes (memstore keeps everything in RAM). Test files use `describeRgw`: it
// skips with the reason when the run has no RGW (rgwSetup.ts says when that is allowed).
import {
  AbortMultipartUploadCommand, DeleteBucketCommand, DeleteObjectsCommand, ListMultipartUploadsCommand, ListObjectsV2Command
} from "@aws-sdk/client-s3"
import { describe } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { existsSync, readFileSync } from "node:fs"
import { inject } from "vitest"
import { type RgwServer, startExtraRgw } from "./CephRgw.ts"
import { freshBucketName, makeS3Client, TestS3, type TestS3Error, testS3Of } from "./S3.ts"

/** The run's RGW; `dir` (its cluster's directory) is absent for an external one (LO_MIGRATE_TEST_RGW_URL). */
export type RgwTestServer = Omit<RgwServer, "dir"> & { readonly dir?: string }

export type RgwContext =
  | { readonly kind: "skipped"; readonly reason: string }
  | { readonly kind: "starting"; readonly statusFile: string }
  | { readonly kind: "ready"; readonly server: RgwTestServer }

declare module "vitest" {
  export interface ProvidedContext {
    loMigrateRgw: RgwContext
  }
}

/** Why this run has no RGW, or undefined when it has one (only callable inside a vitest worker). */
export const rgwSkipReason = (): string | undefined => {
  const context = inject("loMigrateRgw")
  return context === undefined ? "rgwSetup.ts is not a globalSetup of this run" : context.kind === "skipped" ? context.reason : undefined
}

/** `describe`, or `describe.skip` with the reason in its name when the run has no RGW. */
export const describeRgw = (name: string, body: () => void) => {
  const reason = rgwSkipReason()
  if (reason === undefined) return describe(name, body)
  console.warn(`RGW tests SKIPPED (${name}): ${reason}`)
  return describe.skip(`${name} [SKIPPED: ${reason}]`, body)
}

let ready: Promise<RgwTestServer> | undefined

/** The run's RGW, once it answers (it starts in the background: up to 3 minutes on a loaded machine). */
export const awaitRgw = (): Promise<RgwTestServer> => {
  ready ??= (async () => {
    const context = inject("loMigrateRgw")
    if (context.kind === "skipped") throw new Error(`no RGW in this run: ${context.reason}`)
    if (context.kind === "ready") return context.server
    const deadline = Date.now() + 180_000
    while (!existsSync(context.statusFile)) {
      if (Date.now() > deadline) throw new Error("Ceph RGW did not start within 180 s")
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    const status = JSON.parse(readFileSync(context.statusFile, "utf8")) as
      | { readonly ok: true; readonly server: RgwTestServer }
      | { readonly ok: false; readonly error: string }
    if (!status.ok) throw new Error(status.error)
    return status.server
  })()
  return ready
}

export const rgwServer: Effect.Effect<RgwTestServer> = Effect.promise(() => awaitRgw())

/** Whether this run's RGW was started here (not external), so tests may add daemons to its cluster. */
export const rgwIsOurs = (): boolean => {
  const context = inject("loMigrateRgw")
  return context !== undefined && context.kind === "starting"
}

/**
 * A second radosgw on the run's cluster (same users and buckets) with `config` options, for the scope;
 * e.g. `{ rgw_max_concurrent_requests: 2 }` makes it answer 503 SlowDown past two requests in flight.
 */
export const extraRgw = (name: string, config: Readonly<Record<string, string | number>>) =>
  Effect.gen(function*() {
    const server = yield* rgwServer
    const dir = server.dir
    if (dir === undefined) return yield* Effect.die(new Error("an external RGW (LO_MIGRATE_TEST_RGW_URL) cannot get a second radosgw"))
    return yield* Effect.acquireRelease(
      Effect.promise(() => startExtraRgw(dir, name, config)),
      (extra) => Effect.promise(() => extra.stop())
    )
  })

/** Empties and deletes a bucket (objects and open multipart uploads); best effort. */
const removeBucket = (client: ReturnType<typeof makeS3Client>, Bucket: string) =>
  Effect.promise(async () => {
    try {
      let token: string | undefined
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket, ...(token === undefined ? {} : { ContinuationToken: token }) }))
        const keys = (page.Contents ?? []).flatMap((o) => (o.Key === undefined ? [] : [{ Key: o.Key }]))
        if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys, Quiet: true } }))
        token = page.IsTruncated === true ? page.NextContinuationToken : undefined
      } while (token !== undefined)
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket }))
      for (const u of uploads.Uploads ?? []) {
        await client.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key!, UploadId: u.UploadId! })).catch(() => undefined)
      }
      await client.send(new DeleteBucketCommand({ Bucket }))
    } catch {
      // the cluster goes away at the end of the run anyway
    }
  })

export class TestRgw {
  /** `TestS3` on a fresh bucket of the run's RGW; the bucket is emptied and deleted with the scope. */
  static readonly layer: Layer.Layer<TestS3, TestS3Error> = Layer.effect(
    TestS3,
    Effect.gen(function*() {
      const server = yield* rgwServer
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => makeS3Client(server.endpoint, { accessKeyId: server.accessKey, secretAccessKey: server.secretKey })),
        (c) => Effect.sync(() => c.destroy())
      )
      const s3 = testS3Of({ ...server, bucket: freshBucketName(), client })
      yield* Effect.acquireRelease(s3.createBucket(s3.bucket), () => removeBucket(client, s3.bucket))
      return TestS3.of(s3)
    })
  )
}
