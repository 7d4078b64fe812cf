// An HTTP proxy in front of the real s3rver that injects faults: a delay before each request is
// forwarded, and 503 answers once a number of requests went through. The server itself is untouched.
import { Context, Effect, Layer } from "effect"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { TestS3 } from "./S3.ts"

export interface FaultProxyShape {
  /** point the tool's --s3-url here */
  readonly endpoint: string
  /** milliseconds each request waits before it is forwarded */
  readonly setDelay: (ms: number) => Effect.Effect<void>
  /** answer 503 SlowDown to every request after the first `n` (undefined: never) */
  readonly failAfter: (n: number | undefined) => Effect.Effect<void>
  /** requests seen so far */
  readonly requests: Effect.Effect<number>
  /** the method of every request seen so far, in order */
  readonly methods: Effect.Effect<ReadonlyArray<string>>
}

export class FaultProxy extends Context.Service<FaultProxy, FaultProxyShape>()("test/FaultProxy") {
  static readonly layer: Layer.Layer<FaultProxy, never, TestS3> = Layer.effect(
    FaultProxy,
    Effect.gen(function*() {
      const upstream = new URL((yield* TestS3).endpoint)
      const state = { delay: 0, failAfter: undefined as number | undefined, seen: 0, methods: [] as Array<string> }
      const server = Http.createServer((req, res) => {
        state.seen += 1
        state.methods.push(req.method ?? "")
        if (state.failAfter !== undefined && state.seen > state.failAfter) {
          req.resume()
          res.writeHead(503, { "content-type": "application/xml" })
          res.end("<Error><Code>SlowDown</Code><Message>injected</Message></Error>")
          return
        }
        setTimeout(() => {
          const forward = Http.request({
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: req.headers
          }, (answer) => {
            res.writeHead(answer.statusCode ?? 502, answer.headers)
            answer.pipe(res)
          })
          forward.on("error", () => res.destroy())
          req.pipe(forward)
        }, state.delay)
      })
      const port = yield* Effect.acquireRelease(
        Effect.callback<number>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
        }),
        () =>
          Effect.callback<void>((resume) => {
            server.closeAllConnections()
            server.close(() => resume(Effect.void))
          })
      )
      return FaultProxy.of({
        endpoint: `http://127.0.0.1:${port}`,
        setDelay: (ms) => Effect.sync(() => void (state.delay = ms)),
        failAfter: (n) => Effect.sync(() => void (state.failAfter = n)),
        requests: Effect.sync(() => state.seen),
        methods: Effect.sync(() => [...state.methods])
      })
    })
  )
}
