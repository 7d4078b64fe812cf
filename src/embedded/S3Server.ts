/**
 * An in-process S3 server (s3rver) for the demo: a random loopback port, its data in a temp dir that is
 * removed when the scope closes, and a bucket. s3rver is a stand-in: the migrator talks to it exactly as
 * to AWS S3, Ceph RGW or MinIO (path-style URLs, s3rver's fixed key pair).
 */
import { Effect, Redacted, type Scope } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { EmbeddedUnavailable } from "../domain/DemoErrors.ts"
import { defaultPolicy } from "../core/Retry.ts"
import { loadSdk, makeClient } from "../s3/S3Store.ts"

export interface EmbeddedS3 {
  readonly endpoint: string
  readonly bucket: string
  readonly accessKey: string
  readonly secretKey: string
  /** where s3rver keeps the objects; removed with the scope */
  readonly directory: string
}

/** s3rver's built-in key pair. */
const key = "S3RVER"

const problem = (cause: unknown) => (cause instanceof Error ? cause.message : String(cause))

export const start = (bucket: string): Effect.Effect<EmbeddedS3, EmbeddedUnavailable, Scope.Scope> =>
  Effect.gen(function*() {
    const fail = (cause: unknown) => new EmbeddedUnavailable({ service: "S3 server (s3rver)", problem: problem(cause) })
    const directory = yield* Effect.acquireRelease(
      Effect.try({ try: () => NodeFs.mkdtempSync(NodePath.join(NodeOs.tmpdir(), "lo-migrate-demo-s3-")), catch: fail }),
      (dir) => Effect.sync(() => NodeFs.rmSync(dir, { recursive: true, force: true }))
    )
    // loaded only by the demo: `migrate` never needs it
    const { default: S3rver } = yield* Effect.tryPromise({ try: () => import("s3rver"), catch: fail })
    const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory })
    const address = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => server.run(), catch: fail }),
      () => Effect.promise(() => server.close().catch(() => undefined))
    )
    const endpoint = `http://127.0.0.1:${address.port}`
    const sdk = yield* loadSdk
    const client = makeClient(sdk, {
      endpoint,
      region: "us-east-1",
      bucket,
      pathStyle: true,
      accessKey: Redacted.make(key),
      secretKey: Redacted.make(key),
      partSize: 5 * 1024 * 1024,
      partConcurrency: 1,
      connections: 1,
      retry: defaultPolicy(1)
    })
    yield* Effect.tryPromise({ try: () => client.send(new sdk.CreateBucketCommand({ Bucket: bucket })), catch: fail }).pipe(
      Effect.ensuring(Effect.sync(() => client.destroy()))
    )
    return { endpoint, bucket, accessKey: key, secretKey: key, directory }
  })
