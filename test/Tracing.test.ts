// OpenTelemetry: with OTEL_EXPORTER_OTLP_ENDPOINT set, the executable exports its spans over OTLP/HTTP
// (JSON) to <endpoint>/v1/traces; a minimal collector here records what arrives.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import * as Http from "node:http"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes } from "./support/Nice2Fixture.ts"
import { TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)

/** Records every request body by path; answers 200 as a collector does. */
const collector = Effect.acquireRelease(
  Effect.promise(() =>
    new Promise<{ server: Http.Server; port: number; received: Array<{ path: string; body: string }> }>((resolve) => {
      const received: Array<{ path: string; body: string }> = []
      const server = Http.createServer((req, res) => {
        let body = ""
        req.setEncoding("utf8").on("data", (d: string) => (body += d)).on("end", () => {
          received.push({ path: req.url ?? "", body })
          res.writeHead(200, { "content-type": "application/json" }).end("{}")
        })
      })
      server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port, received }))
    })
  ),
  ({ server }) => Effect.promise(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()) }))
)

const spanNames = (body: string): Array<string> => {
  const data = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: Array<{ name: string }> }> }> }
  return data.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((span) => span.name)))
}

describe("OpenTelemetry tracing", () => {
  it.live("exports spans to OTEL_EXPORTER_OTLP_ENDPOINT", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      const otel = yield* collector
      yield* createNice2Schema()
      for (let i = 0; i < 3; i++) yield* insertObject({ bytes: randomBytes(100 + i, 800 + i) })
      const result = yield* runCli([
        "migrate", "--pg-url", db.url, "--s3-url", s3.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket
      ], { env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${otel.port}` } })
      assert.strictEqual(result.code, 0, result.stderr)
      const traces = otel.received.filter((r) => r.path === "/v1/traces")
      assert.isAbove(traces.length, 0, JSON.stringify(otel.received.map((r) => r.path)))
      const names = traces.flatMap((t) => spanNames(t.body))
      assert.include(names, "migrate")
      assert.strictEqual(names.filter((n) => n === "S3Store.put").length, 3)
      assert.include(traces[0]!.body, "lo-migrate")
    }).pipe(Effect.scoped, Effect.provide(env)))
})
