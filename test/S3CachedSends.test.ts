// The S3 client resolves each command's middleware once (cacheMiddleware) and still honours every
// call's abort signal, which the SDK would otherwise only take as a send option that turns the cache
// off: an aborted request closes its socket at once, a concurrent one on the same client is not
// touched, and later sends of the same command still abort. Against a real HTTP server that never
// answers, and s3rver for the answers.
import * as Sdk from "@aws-sdk/client-s3"
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import * as Http from "node:http"
import * as S3Store from "../src/s3/S3Store.ts"
import { TestS3 } from "./support/S3.ts"

const options = (endpoint: string, bucket: string): S3Store.S3StoreOptions => ({
  endpoint,
  region: "us-east-1",
  bucket,
  pathStyle: true,
  accessKey: Redacted.make("S3RVER"),
  secretKey: Redacted.make("S3RVER"),
  partSize: 5 * 1024 * 1024,
  partConcurrency: 2,
  connections: 4,
  retry: { attempts: 1, base: "10 millis", cap: "10 millis" }
})

/** A server that takes requests and never answers; counts the sockets that closed. */
const silentServer = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ readonly endpoint: string; readonly closed: () => number; readonly server: Http.Server }>((resolve) => {
      let closed = 0
      const server = Http.createServer(() => {})
      server.on("connection", (socket) => socket.on("close", () => closed++))
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as { port: number }).port
        resolve({ endpoint: `http://127.0.0.1:${port}`, closed: () => closed, server })
      })
    })
  ),
  ({ server }) => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
)

describe("S3 client: cached middleware and abort signals", () => {
  it.live("an aborted send rejects at once and closes its socket; the one beside it goes on; the next send aborts too", () =>
    Effect.scoped(Effect.gen(function*() {
      const silent = yield* silentServer
      const client = S3Store.makeClient(Sdk, options(silent.endpoint, "b"))
      yield* Effect.addFinalizer(() => Effect.sync(() => client.destroy()))
      for (const round of [1, 2]) {
        const aborted = new AbortController()
        const other = new AbortController()
        const started = Date.now()
        const first = client.send(new HeadObjectCommand({ Bucket: "b", Key: `k${round}` }), { abortSignal: aborted.signal })
        const beside = client.send(new HeadObjectCommand({ Bucket: "b", Key: `o${round}` }), { abortSignal: other.signal })
        let besideSettled = false
        beside.then(() => (besideSettled = true), () => (besideSettled = true))
        setTimeout(() => aborted.abort(), 200)
        const outcome = yield* Effect.promise(() => first.then(() => "answered", (e: Error) => e.name))
        assert.strictEqual(outcome, "AbortError", `round ${round}`)
        assert.isBelow(Date.now() - started, 5_000, "rejected at the abort, not at a timeout")
        for (let i = 0; i < 100 && silent.closed() < round * 1; i++) yield* Effect.sleep("20 millis")
        assert.isAtLeast(silent.closed(), round, "the aborted request's socket is closed")
        assert.isFalse(besideSettled, "the other request is still waiting")
        other.abort()
        yield* Effect.promise(() => beside.catch(() => undefined))
      }
    })), 20_000)

  layer(TestS3.layer)((it) => {
    it.effect("sends with and without a signal answer as the SDK does (the handler cache serves both)", () =>
      Effect.gen(function*() {
        const s3 = yield* TestS3
        const client = S3Store.makeClient(Sdk, options(s3.endpoint, s3.bucket))
        const body = new TextEncoder().encode("cached")
        yield* Effect.promise(() => client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: "cached-a", Body: body, ContentLength: body.length })))
        yield* Effect.promise(() =>
          client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: "cached-b", Body: body, ContentLength: body.length }), {
            abortSignal: new AbortController().signal
          })
        )
        for (const key of ["cached-a", "cached-b"]) {
          const head = yield* Effect.promise(() => client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }), { abortSignal: new AbortController().signal }))
          assert.strictEqual(head.ContentLength, body.length, key)
        }
        client.destroy()
      }))
  })
})
