// A fault-injecting HTTP proxy in front of the real S3 server (s3rver): the tool talks to the proxy,
// the proxy forwards to s3rver, except when a rule says to misbehave. Faults are injected in front of
// the real server, never in its place.
//
// Rules are tried in order; the first one that matches the request (method, path, a header's value), passes
// its probability draw and still has count left, fires. Faults:
// - `status`: answer with an S3-style XML error (500 InternalError, 503 SlowDown, 403 AccessDenied,
//   403 SignatureDoesNotMatch, ...) without forwarding; the request body is read first, as S3 does;
// - `reset`: destroy the connection without an answer, before forwarding (`before`) or after s3rver has
//   processed the request (`after`: the object may be stored, the client does not know);
// - `slow`: forward, but hold the answer back for `delayMs`;
// - `truncate`: forward, then send the answer's headers and half of its body and cut the connection;
// - `answer`: do not forward; answer with this status, body and headers (e.g. the 200 with an <Error>
//   body that CompleteMultipartUpload may give, or a 200 without an ETag): a server that says yes and
//   did nothing;
// - `stripEtag`: forward, but drop the ETag header from the answer (the object is stored; the answer
//   proves nothing);
// - `stall`: read the request, never answer (the connection stays open); `stallUpload`: never even read
//   the request body (the client's writes back up);
// - `drip`: forward, then send the answer a byte every `intervalMs`, with `padding` spaces after its
//   body (counted in its Content-Length): never idle, done only after a long while;
// - `flipBody`: forward with one byte of the request body changed (XOR 0x01; at `offset`, default the
//   middle), headers untouched: a body damaged in transit, which the server must refuse by its
//   Content-MD5 (the signature cannot catch it: bodies are sent UNSIGNED-PAYLOAD);
// - `sseKms`: forward, then answer as S3 does for an SSE-KMS object: `x-amz-server-side-encryption:
//   aws:kms` and an ETag that is no MD5 of the bytes; `dropHeader` also removes that answer header
//   (e.g. x-amz-meta-sha256: a HEAD that cannot prove the object).
// The log records each request's headers and, once known, the status and S3 error code of its answer.
// A rule with `count` fires at most that many times; `probability` (default 1) draws per request with a
// seeded generator, so a run is reproducible.
import { Context, Effect, Layer } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import type { AddressInfo } from "node:net"
import { createHash } from "node:crypto"
import { Transform } from "node:stream"
import { TestS3 } from "./S3.ts"

export type Fault =
  | { readonly kind: "status"; readonly status: number; readonly code: string; readonly message?: string }
  | { readonly kind: "reset"; readonly when: "before" | "after" }
  | { readonly kind: "slow"; readonly delayMs: number }
  | { readonly kind: "truncate" }
  | { readonly kind: "answer"; readonly status: number; readonly body: string; readonly headers?: Readonly<Record<string, string>> }
  | { readonly kind: "stripEtag" }
  | { readonly kind: "stall" }
  | { readonly kind: "stallUpload" }
  | { readonly kind: "drip"; readonly intervalMs: number; readonly padding: number }
  | { readonly kind: "flipBody"; readonly offset?: number }
  | { readonly kind: "sseKms"; readonly dropHeader?: string }

export interface FaultRule {
  readonly name?: string
  readonly method?: string
  /** matched against the path and query, e.g. /bucket/key?partNumber=1 */
  readonly path?: RegExp
  readonly probability?: number
  readonly count?: number
  /** fires only for a request whose header `name` (lower case) has `value` (e.g. a refused x-amz-storage-class) */
  readonly header?: { readonly name: string; readonly value: string }
  /** fires only once the proxy has seen this many requests (e.g. "S3 breaks after three HEADs") */
  readonly afterRequests?: number
  readonly fault: Fault
  /** called when the rule fires, as the request arrives (e.g. to signal the tool at that very step) */
  readonly onFire?: (() => void) | undefined
}

export interface ProxyRequestLog {
  readonly method: string
  readonly path: string
  /** the rule that fired, or undefined when forwarded untouched */
  readonly fault: string | undefined
  /** the request's headers as the proxy received them (lower-case names) */
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
  /** the answer's status (the server's, or the injected one), once it is sent */
  readonly status?: number
  /** the S3 error code in the answer's body (`<Code>…</Code>`), if any */
  readonly errorCode?: string
}

export interface FaultProxyShape {
  /** the proxy's endpoint: http(s)://127.0.0.1:<port> */
  readonly endpoint: string
  /** replaces the rules (and their counts) */
  readonly setRules: (rules: ReadonlyArray<FaultRule>) => Effect.Effect<void>
  /** every request seen so far */
  readonly log: Effect.Effect<ReadonlyArray<ProxyRequestLog>>
  /** how many times each named rule fired */
  readonly fired: (name: string) => Effect.Effect<number>
}

export const faults = {
  internalError: { kind: "status", status: 500, code: "InternalError" },
  slowDown: { kind: "status", status: 503, code: "SlowDown" },
  accessDenied: { kind: "status", status: 403, code: "AccessDenied" },
  signatureDoesNotMatch: { kind: "status", status: 403, code: "SignatureDoesNotMatch" },
  resetBefore: { kind: "reset", when: "before" },
  resetAfter: { kind: "reset", when: "after" },
  truncate: { kind: "truncate" }
} as const satisfies Record<string, Fault>

const errorBody = (code: string, path: string, message = "injected by FaultProxy") =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message.replace(/[<&>]/g, "")}</Message>` +
  `<Resource>${path.replace(/[<&>]/g, "")}</Resource><RequestId>faultproxy</RequestId></Error>`

/** A seeded xorshift32 in [0, 1): reproducible probability draws. */
const seeded = (seed: number) => {
  let x = seed | 0 || 0x2545f491
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 0x100000000
  }
}

export interface FaultProxyOptions {
  /** where s3rver listens, e.g. http://127.0.0.1:1234 */
  readonly upstream: string
  readonly rules?: ReadonlyArray<FaultRule>
  readonly seed?: number
  /** serve https with this certificate (PEM) */
  readonly tls?: { readonly cert: string; readonly key: string }
}

export const make = (options: FaultProxyOptions) =>
  Effect.gen(function*() {
    const upstream = new URL(options.upstream)
    let rules: Array<{ rule: FaultRule; left: number }> = []
    const fired = new Map<string, number>()
    const log: Array<ProxyRequestLog> = []
    const random = seeded(options.seed ?? 1)
    const setRulesUnsafe = (next: ReadonlyArray<FaultRule>) => {
      rules = next.map((rule) => ({ rule, left: rule.count ?? Number.POSITIVE_INFINITY }))
    }
    setRulesUnsafe(options.rules ?? [])
    const agent = new Http.Agent({ keepAlive: true })

    const pick = (req: Http.IncomingMessage): FaultRule | undefined => {
      for (const entry of rules) {
        const { rule } = entry
        if (entry.left <= 0) continue
        if (rule.method !== undefined && rule.method !== req.method) continue
        if (rule.path !== undefined && !rule.path.test(req.url ?? "")) continue
        if (rule.afterRequests !== undefined && log.length < rule.afterRequests) continue
        if (rule.header !== undefined && req.headers[rule.header.name] !== rule.header.value) continue
        if (rule.probability !== undefined && random() >= rule.probability) continue
        entry.left -= 1
        const name = rule.name ?? rule.fault.kind
        fired.set(name, (fired.get(name) ?? 0) + 1)
        rule.onFire?.()
        return rule
      }
      return undefined
    }

    const forward = (
      req: Http.IncomingMessage,
      onResponse: (res: Http.IncomingMessage, body: Buffer) => void,
      onError: (e: Error) => void,
      body: (req: Http.IncomingMessage) => NodeJS.ReadableStream = (r) => r
    ) => {
      const headers = { ...req.headers }
      delete headers.expect // the proxy already answered 100-continue to the client
      const out = Http.request({
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers,
        agent
      }, (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () => onResponse(res, Buffer.concat(chunks)))
        res.on("error", onError)
      })
      out.on("error", onError)
      body(req).pipe(out)
    }

    /** the request body with the byte at `offset` XORed with 0x01 */
    const flipped = (offset: number) => (req: Http.IncomingMessage) => {
      let seen = 0
      return req.pipe(new Transform({
        transform(chunk: Buffer, _encoding, done) {
          if (offset >= seen && offset < seen + chunk.length) {
            const copy = Buffer.from(chunk)
            copy[offset - seen] = copy[offset - seen]! ^ 0x01
            chunk = copy
          }
          seen += chunk.length
          done(null, chunk)
        }
      }))
    }

    const timers = new Set<ReturnType<typeof setInterval>>()
    const handler = (req: Http.IncomingMessage, res: Http.ServerResponse) => {
      const rule = pick(req)
      const entry: { -readonly [K in keyof ProxyRequestLog]: ProxyRequestLog[K] } = {
        method: req.method ?? "",
        path: req.url ?? "",
        fault: rule === undefined ? undefined : rule.name ?? rule.fault.kind,
        headers: { ...req.headers }
      }
      log.push(entry)
      // what the client gets: the status, and the error code of an XML error body
      const writeHead = res.writeHead.bind(res) as (status: number, ...rest: Array<unknown>) => Http.ServerResponse
      ;(res as unknown as { writeHead: typeof writeHead }).writeHead = (status, ...rest) => {
        entry.status = status
        return writeHead(status, ...rest)
      }
      const end = res.end.bind(res) as (...args: Array<unknown>) => Http.ServerResponse
      ;(res as unknown as { end: typeof end }).end = (...args) => {
        const body = args[0]
        const code = (Buffer.isBuffer(body) || typeof body === "string") ? /<Code>([^<]*)<\/Code>/.exec(String(body))?.[1] : undefined
        if (code !== undefined) entry.errorCode = code
        return end(...args)
      }
      const fail = () => {
        if (!res.headersSent) res.writeHead(502)
        res.destroy()
      }
      const relay = (delayMs: number) =>
        forward(req, (up, body) => {
          setTimeout(() => {
            res.writeHead(up.statusCode ?? 502, up.headers)
            res.end(body)
          }, delayMs)
        }, fail)
      const fault = rule?.fault
      if (fault === undefined) return relay(0)
      switch (fault.kind) {
        case "status": {
          req.resume()
          req.on("end", () => {
            const body = errorBody(fault.code, req.url ?? "", fault.message)
            res.writeHead(fault.status, { "content-type": "application/xml", "content-length": Buffer.byteLength(body) })
            res.end(body)
          })
          return
        }
        case "reset":
          if (fault.when === "before") {
            req.resume()
            req.socket.destroy()
            return
          }
          return forward(req, () => req.socket.destroy(), fail)
        case "slow":
          return relay(fault.delayMs)
        case "truncate":
          return forward(req, (up, body) => {
            const headers = { ...up.headers, "content-length": String(Math.max(body.length, 64)) }
            res.writeHead(up.statusCode ?? 502, headers)
            res.write(body.subarray(0, Math.floor(body.length / 2)))
            setTimeout(() => res.destroy(), 10)
          }, fail)
        case "answer": {
          req.resume()
          req.on("end", () => {
            res.writeHead(fault.status, { "content-length": String(Buffer.byteLength(fault.body)), ...fault.headers })
            res.end(fault.body)
          })
          return
        }
        case "stripEtag":
          return forward(req, (up, body) => {
            const { etag: _etag, ...headers } = up.headers
            res.writeHead(up.statusCode ?? 502, headers)
            res.end(body)
          }, fail)
        case "stall":
          req.resume()
          return
        case "stallUpload":
          req.pause()
          return
        case "drip":
          return forward(req, (up, upBody) => {
            const body = Buffer.concat([upBody, Buffer.alloc(fault.padding, " ")])
            res.writeHead(up.statusCode ?? 502, { ...up.headers, "content-length": String(body.length) })
            let sent = 0
            const timer = setInterval(() => {
              if (sent >= body.length || res.destroyed) {
                clearInterval(timer)
                timers.delete(timer)
                if (!res.destroyed) res.end()
                return
              }
              res.write(body.subarray(sent, sent + 1))
              sent++
            }, fault.intervalMs)
            timers.add(timer)
          }, fail)
        case "sseKms":
          return forward(req, (up, body) => {
            const headers: Http.IncomingHttpHeaders = { ...up.headers, "x-amz-server-side-encryption": "aws:kms" }
            if (typeof headers.etag === "string") headers.etag = `"${createHash("md5").update(`kms:${headers.etag}`).digest("hex")}"`
            if (fault.dropHeader !== undefined) delete headers[fault.dropHeader]
            res.writeHead(up.statusCode ?? 502, headers)
            res.end(body)
          }, fail)
        case "flipBody": {
          const length = Number(req.headers["content-length"] ?? 0)
          return forward(req, (up, body) => {
            res.writeHead(up.statusCode ?? 502, up.headers)
            res.end(body)
          }, fail, flipped(fault.offset ?? Math.floor(length / 2)))
        }
      }
    }

    const server = options.tls === undefined
      ? Http.createServer(handler)
      : Https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler)
    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as AddressInfo).port)))
      }),
      () =>
        Effect.callback<void>((resume) => {
          for (const timer of timers) clearInterval(timer)
          agent.destroy()
          server.closeAllConnections()
          server.close(() => resume(Effect.void))
        })
    )
    return {
      endpoint: `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${port}`,
      setRules: (next) => Effect.sync(() => setRulesUnsafe(next)),
      log: Effect.sync(() => [...log]),
      fired: (name) => Effect.sync(() => fired.get(name) ?? 0)
    } satisfies FaultProxyShape
  })

/** A FaultProxy in front of the TestS3 server of the same test; no rules until `setRules`. */
export class FaultProxy extends Context.Service<FaultProxy, FaultProxyShape>()("test/FaultProxy") {
  static readonly layerWith = (options: Omit<FaultProxyOptions, "upstream"> = {}) =>
    Layer.effect(FaultProxy, Effect.flatMap(TestS3, (s3) => make({ ...options, upstream: s3.endpoint })))
  static readonly layer = FaultProxy.layerWith()
}
