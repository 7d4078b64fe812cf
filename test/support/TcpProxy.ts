// A TCP proxy in front of the real PostgreSQL server, for faults on the wire: the tool connects to the
// proxy, the proxy to the server, bytes pass both ways untouched until a test says otherwise:
// - `freeze()`: the connections open now stop moving bytes both ways (neither side is read, so what
//   they send waits in the kernel's buffers), their sockets stay open: a frozen NAT or a hung VM;
//   `freezeNew` also freezes every connection opened later;
// - `thaw()`: everything moves again;
// - `reset()`: every open connection is destroyed; `restart(ms)` also refuses new ones for `ms` (a server
//   restart as the client sees it);
// - `freezeSession(port)` / `resetSession(port)`: the same for the one connection whose server side
//   comes from `port` (pg_stat_activity.client_port of the backend: the session running a given step);
// - `onStatement(pattern, action)`: the proxy follows what each client sends (PostgreSQL's frontend
//   messages, plaintext sessions only: simple queries, and prepared statements by their Parse text) and,
//   when a statement matching `pattern` is sent and the rule is armed, acts on that very connection:
//   `freeze` (the statement is held, never reaches the server, nothing moves), `reset`, or a callback
//   with the connection's port as the server sees it (e.g. to terminate that backend).
// Faults go in front of the real server, never in its place.
import { Effect } from "effect"
import * as Net from "node:net"

export interface TcpProxy {
  readonly port: number
  /** a URL like `url` (postgres://user:pw@host:port/db?...) that goes through the proxy */
  readonly via: (url: string) => string
  readonly freeze: (options?: { readonly freezeNew?: boolean }) => Effect.Effect<void>
  readonly thaw: Effect.Effect<void>
  readonly reset: Effect.Effect<void>
  readonly restart: (downMs: number) => Effect.Effect<void>
  /** true when a connection with that client port was found */
  readonly freezeSession: (clientPort: number) => Effect.Effect<boolean>
  readonly resetSession: (clientPort: number) => Effect.Effect<boolean>
  /** acts on the connection that sends a matching statement (see the header) */
  readonly onStatement: (rule: StatementRule) => Effect.Effect<void>
  /** times a statement rule acted */
  readonly acted: Effect.Effect<number>
  /** connections accepted so far */
  readonly accepted: Effect.Effect<number>
}

interface Pair {
  readonly client: Net.Socket
  readonly server: Net.Socket
  frozen: boolean
  /** client bytes held back while frozen by a statement rule */
  held: Array<Buffer>
}

export type StatementAction = "freeze" | "reset" | ((serverSidePort: number) => void)

export interface StatementRule {
  readonly pattern: RegExp
  readonly action: StatementAction
  /** the rule acts only while this returns true (e.g. once the run is under way) */
  readonly armed?: (() => boolean) | undefined
  /** how many times it acts; default once */
  readonly count?: number | undefined
}

/**
 * Follows a client's frontend messages: after the startup packet (and an SSLRequest answered 'N'),
 * each message is a type byte and an int32 length counting itself. Reports the SQL of every simple
 * Query ('Q') and of every Bind ('B') by the text its statement was parsed with ('P').
 */
class FrontendScanner {
  private buffer: Buffer = Buffer.alloc(0)
  private startupDone = false
  private lost = false
  private readonly parsed = new Map<string, string>()
  constructor(private readonly onStatement: (sql: string) => void) {}

  feed(chunk: Buffer): void {
    if (this.lost) return
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    while (true) {
      if (!this.startupDone) {
        if (this.buffer.length < 8) return
        const length = this.buffer.readInt32BE(0)
        if (this.buffer.length < length) return
        const code = this.buffer.readInt32BE(4)
        this.buffer = this.buffer.subarray(length)
        // SSLRequest: TLS would hide everything after it (the tests' sessions are plaintext)
        if (code === 80877103) {
          this.lost = true
          return
        }
        this.startupDone = true
        continue
      }
      if (this.buffer.length < 5) return
      const type = this.buffer[0]!
      const length = this.buffer.readInt32BE(1)
      if (this.buffer.length < 1 + length) return
      const body = this.buffer.subarray(5, 1 + length)
      this.buffer = this.buffer.subarray(1 + length)
      if (type === 0x51 /* Q */) this.onStatement(cString(body, 0).text)
      else if (type === 0x50 /* P */) {
        const name = cString(body, 0)
        this.parsed.set(name.text, cString(body, name.next).text)
      } else if (type === 0x42 /* B */) {
        const portal = cString(body, 0)
        const statement = cString(body, portal.next).text
        const sql = this.parsed.get(statement)
        if (sql !== undefined) this.onStatement(sql)
      }
    }
  }
}

const cString = (buffer: Buffer, start: number) => {
  const end = buffer.indexOf(0, start)
  return { text: buffer.toString("utf8", start, end < 0 ? buffer.length : end), next: end < 0 ? buffer.length : end + 1 }
}

export const make = (upstream: { readonly host: string; readonly port: number }): Effect.Effect<TcpProxy, never, import("effect").Scope.Scope> =>
  Effect.gen(function*() {
    const pairs = new Set<Pair>()
    let freezeNew = false
    let refuseUntil = 0
    let accepted = 0
    let acted = 0
    const statementRules: Array<{ rule: StatementRule; left: number }> = []
    const setFrozen = (pair: Pair, frozen: boolean) => {
      pair.frozen = frozen
      if (frozen) {
        pair.client.pause()
        pair.server.pause()
      } else {
        for (const chunk of pair.held.splice(0)) pair.server.write(chunk)
        pair.client.resume()
        pair.server.resume()
      }
    }
    const server = Net.createServer((client) => {
      if (Date.now() < refuseUntil) {
        client.destroy()
        return
      }
      accepted++
      const upstreamSocket = Net.connect({ host: upstream.host, port: upstream.port })
      const pair: Pair = { client, server: upstreamSocket, frozen: false, held: [] }
      pairs.add(pair)
      // what the client's statement calls for, decided before its bytes are forwarded
      let verdict: "pass" | "freeze" | "reset" = "pass"
      const scanner = new FrontendScanner((sql) => {
        for (const entry of statementRules) {
          if (entry.left <= 0 || !entry.rule.pattern.test(sql) || entry.rule.armed?.() === false) continue
          entry.left -= 1
          acted += 1
          const action = entry.rule.action
          if (action === "freeze" || action === "reset") verdict = action
          else setImmediate(() => action(upstreamSocket.localPort ?? 0))
          return
        }
      })
      const forward = (from: Net.Socket, to: Net.Socket) => {
        from.on("data", (chunk: Buffer) => {
          if (from === client) {
            try {
              scanner.feed(chunk)
            } catch (error) {
              // a broken rule must show, but never silence the wire (the tool would see a stall)
              console.error("TcpProxy: a statement rule failed", error)
            }
            if (verdict === "reset") {
              client.resetAndDestroy()
              upstreamSocket.destroy()
              return
            }
            if (verdict === "freeze" || pair.frozen) {
              verdict = "pass"
              pair.held.push(chunk)
              setFrozen(pair, true)
              return
            }
          }
          if (!to.write(chunk)) {
            from.pause()
            to.once("drain", () => {
              if (!pair.frozen) from.resume()
            })
          }
        })
      }
      forward(client, upstreamSocket)
      forward(upstreamSocket, client)
      const end = () => {
        pairs.delete(pair)
        client.destroy()
        upstreamSocket.destroy()
      }
      client.on("close", end)
      upstreamSocket.on("close", end)
      client.on("error", end)
      upstreamSocket.on("error", end)
      if (freezeNew) setFrozen(pair, true)
    })
    const port = yield* Effect.acquireRelease(
      Effect.callback<number>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.succeed((server.address() as Net.AddressInfo).port)))
      }),
      () =>
        Effect.callback<void>((resume) => {
          for (const pair of pairs) {
            pair.client.destroy()
            pair.server.destroy()
          }
          server.close(() => resume(Effect.void))
        })
    )
    return {
      port,
      via: (url) => {
        const u = new URL(url)
        u.hostname = "127.0.0.1"
        u.port = String(port)
        return u.toString()
      },
      freeze: (options = {}) =>
        Effect.sync(() => {
          freezeNew = options.freezeNew === true
          for (const pair of pairs) setFrozen(pair, true)
        }),
      thaw: Effect.sync(() => {
        freezeNew = false
        for (const pair of pairs) setFrozen(pair, false)
      }),
      reset: Effect.sync(() => {
        for (const pair of pairs) {
          pair.client.destroy()
          pair.server.destroy()
        }
      }),
      restart: (downMs) =>
        Effect.sync(() => {
          refuseUntil = Date.now() + downMs
          for (const pair of pairs) {
            pair.client.destroy()
            pair.server.destroy()
          }
        }),
      freezeSession: (clientPort) =>
        Effect.sync(() => {
          for (const pair of pairs) {
            if (pair.server.localPort === clientPort) {
              setFrozen(pair, true)
              return true
            }
          }
          return false
        }),
      resetSession: (clientPort) =>
        Effect.sync(() => {
          for (const pair of pairs) {
            if (pair.server.localPort === clientPort) {
              pair.client.resetAndDestroy()
              pair.server.destroy()
              return true
            }
          }
          return false
        }),
      onStatement: (rule) =>
        Effect.sync(() => {
          statementRules.push({ rule, left: rule.count ?? 1 })
        }),
      acted: Effect.sync(() => acted),
      accepted: Effect.sync(() => accepted)
    }
  })
