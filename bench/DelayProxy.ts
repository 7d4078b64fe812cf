/**
 * A delaying HTTP proxy in front of s3rver, in a process of its own (so its CPU is neither lo-migrate's
 * nor the bench's): every request waits `delayMs` after it arrives before it is forwarded, then its body
 * and the answer stream through unchanged. Every S3 request thus takes `delayMs` longer, as on a network
 * with that much latency; the bytes, headers and status codes are s3rver's (the signature stays valid:
 * Host and path are passed on as sent). Started by the bench as
 * `node bench/DelayProxy.ts <upstream> <delayMs>` (Node strips the types); prints `listening <port>`
 * once it accepts requests, and stops on SIGTERM or when its parent goes away (stdin ends).
 */
import * as Http from "node:http"
import type { AddressInfo } from "node:net"

const upstream = new URL(process.argv[2] ?? "")
const delayMs = Number(process.argv[3] ?? "30")
if (!/^https?:$/.test(upstream.protocol) || !Number.isFinite(delayMs) || delayMs < 0) {
  process.stderr.write("usage: DelayProxy.ts <upstream URL> <delay ms>\n")
  process.exit(2)
}

const agent = new Http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY })
let forwarded = 0

const server = Http.createServer((req, res) => {
  // the body waits in the socket meanwhile (paused), so a large upload is not buffered here
  req.pause()
  setTimeout(() => {
    const headers = { ...req.headers }
    // Node's server already answered 100-continue to the client; s3rver gets the body at once
    delete headers.expect
    const out = Http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers)
      up.pipe(res)
    })
    out.on("error", () => {
      if (!res.headersSent) res.writeHead(502)
      res.destroy()
    })
    req.on("error", () => out.destroy())
    req.pipe(out)
    req.resume()
    forwarded++
  }, delayMs)
})
server.keepAliveTimeout = 65_000

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`)
})

const stop = () => {
  process.stderr.write(`delay proxy: ${forwarded} requests forwarded, ${delayMs} ms each\n`)
  agent.destroy()
  server.closeAllConnections()
  server.close(() => process.exit(0))
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
process.stdin.on("end", stop)
process.stdin.resume()
