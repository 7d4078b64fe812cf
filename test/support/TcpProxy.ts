// A TCP proxy in front of the real PostgreSQL server, for faults on the wire: the tool connects to the
// proxy, the proxy to the server, bytes pass both ways untouched until a test says otherwise:
// - `freeze()`: the connections open now stop moving bytes both ways (neither side is read, so what
//   they send waits in the kernel's buffers), their sockets stay open: a frozen NAT or a hung VM;
//   `freezeNew` also freezes every connection opened later;
// - `thaw()`: everything moves again;
// - `reset()`: every open connection is destroyed; `restart(ms)` also refuses new ones for `ms` (a server
//   restart as the client sees it);
// - `freezeSession(port)` / `resetSession(port)`: the same for the one connection whose server side
//   comes from `port` (pg_stat_activity.client_port of the backend: the session running a given step).
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
  /** connections accepted so far */
  readonly accepted: Effect.Effect<number>
}

interface Pair {
  readonly client: Net.Socket
  readonly server: Net.Socket
  frozen: boolean
}

export const make = (upstream: { readonly host: string; readonly port: number }): Effect.Effect<TcpProxy, never, import("effect").Scope.Scope> =>
  Effect.gen(function*() {
    const pairs = new Set<Pair>()
    let freezeNew = false
    let refuseUntil = 0
    let accepted = 0
    const setFrozen = (pair: Pair, frozen: boolean) => {
      pair.frozen = frozen
      if (frozen) {
        pair.client.pause()
        pair.server.pause()
      } else {
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
      const pair: Pair = { client, server: upstreamSocket, frozen: false }
      pairs.add(pair)
      const forward = (from: Net.Socket, to: Net.Socket) => {
        from.on("data", (chunk) => {
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
      accepted: Effect.sync(() => accepted)
    }
  })
