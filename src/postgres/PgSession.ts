/**
 * The tool's PostgreSQL sessions, bounded so that a server or network that stops answering can never
 * hang a run (`--pg-timeout`, default 300 s):
 *
 * - server side, every session starts with `statement_timeout` (a statement running longer is
 *   cancelled: SQLSTATE 57014, retried) and `idle_in_transaction_session_timeout` (a tool frozen inside
 *   a transaction cannot hold its locks for ever);
 * - client side, each session's socket is watched: once a statement has been sent, the server owes an
 *   answer, and when no byte at all has come or gone for the timeout plus a grace (the server's own
 *   cancel has time to arrive), the socket is destroyed. The driver then fails the statement as a lost
 *   connection, which is retried on a fresh session like any other. This is what catches a path that
 *   holds bytes both ways with the sockets open (a frozen NAT, a hung proxy, a stopped VM), which TCP
 *   keepalive cannot: something on the path still answers its probes. Idle pooled sessions owe nothing
 *   and are left alone;
 * - TCP keepalive (30 s) still finds peers that are gone.
 *
 * The watch knows exactly when an answer is complete: it follows the protocol's message framing up to
 * ReadyForQuery. The socket negotiates TLS itself (libpq's sslmode meanings, PgTls.ts) and hands the
 * driver the plaintext, so the framing is followed on TLS sessions too.
 *
 * Where to connect comes from the connection string and libpq's rules (ConnectionString.ts): TCP hosts,
 * Unix-domain sockets (`<dir>/.s.PGSQL.<port>`), several hosts tried in order (or shuffled with
 * `load_balance_hosts=random`) when a connection cannot be opened.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { SqlError } from "effect/sql"
import * as Net from "node:net"
import { Duplex } from "node:stream"
import * as Tls from "node:tls"
import * as ConnectionString from "./ConnectionString.ts"
import * as PgTls from "./PgTls.ts"

/** `--pg-timeout`'s default, in seconds. */
export const defaultTimeoutSeconds = 300

/** Seconds the client waits past `statement_timeout` before it gives a silent session up. */
export const graceSeconds = 5

export interface SessionOptions {
  readonly maxConnections: number
  /** `--pg-ca FILE`: the root certificate (sslmode defaults to verify-full with it) */
  readonly pgCa?: string | undefined
  /** seconds; default 300 */
  readonly timeoutSeconds?: number | undefined
  /** `application_name` unless the connection string or PGAPPNAME sets one; default "lo-migrate" */
  readonly applicationName?: string | undefined
  /** libpq's PG* variables (default process.env) */
  readonly env?: ConnectionString.Env | undefined
  /** every session starts with default_transaction_read_only: the server refuses writes (verify) */
  readonly readOnly?: boolean | undefined
}

/** The backend message that ends every answer: 'Z', length 5, transaction status. */
const readyForQuery = 0x5a

/**
 * Follows the backend's message framing (a type byte, an int32 length that counts itself, the body)
 * over a plaintext stream, to tell whether the last complete message was ReadyForQuery.
 */
class Framer {
  private header = Buffer.alloc(5)
  private headerHave = 0
  private bodyLeft = 0
  private lastType = 0

  /** Feeds the bytes the server sent; true when they end exactly after a ReadyForQuery. */
  feed(chunk: Uint8Array): boolean {
    let i = 0
    while (i < chunk.length) {
      if (this.bodyLeft > 0) {
        const take = Math.min(this.bodyLeft, chunk.length - i)
        this.bodyLeft -= take
        i += take
        continue
      }
      this.header[this.headerHave++] = chunk[i++]!
      if (this.headerHave === 5) {
        this.lastType = this.header[0]!
        this.bodyLeft = this.header.readInt32BE(1) - 4
        this.headerHave = 0
      }
    }
    return this.bodyLeft === 0 && this.headerHave === 0 && this.lastType === readyForQuery
  }
}

/** One place to connect to: a socket path, or a TCP address with the name TLS checks. */
export interface Endpoint {
  readonly path?: string | undefined
  readonly address?: string | undefined
  readonly port: number
  /** the host name for TLS (SNI, verify-full) and messages */
  readonly name: string
}

export const endpointOf = (t: ConnectionString.Target): Endpoint =>
  t.socketDir !== undefined
    ? { path: `${t.socketDir}/.s.PGSQL.${t.port}`, port: t.port, name: t.host }
    : { address: t.address, port: t.port, name: t.host }

const sslRequest = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])

const open = (e: Endpoint): Net.Socket =>
  e.path !== undefined
    ? Net.connect({ path: e.path })
    : Net.connect({ host: e.address!, port: e.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 })

const where = (e: Endpoint) => e.path ?? `${e.name}:${e.port}`

/**
 * A socket to the first of `endpoints` that accepts a connection, that destroys itself once it owes an
 * answer and nothing has moved for `silenceMs`. With `tls` (and a TCP endpoint) it sends the
 * SSLRequest, and on 'S' runs TLS over the socket; the driver always gets the plaintext.
 */
export const watchedSocket = (
  endpoints: ReadonlyArray<Endpoint>,
  silenceMs: number,
  tls: PgTls.TlsPlan | undefined
): Duplex => {
  let owed = false
  let ended = false
  const framer = new Framer()
  const onRead = (chunk: Buffer) => {
    if (framer.feed(chunk)) owed = false
  }
  const watch = (socket: Net.Socket) =>
    socket.setTimeout(silenceMs, () => {
      // a session closed by the driver (end, Terminate) waits for the server's FIN: on a frozen path that
      // never comes, and the half-closed socket would keep the process alive
      if (!owed && !ended) return
      socket.destroy(
        new Error(
          `PostgreSQL sent nothing for ${Math.round(silenceMs / 1000)} s while a statement waited for its answer ` +
            `(--pg-timeout): the session was dropped`
        )
      )
    })

  const only = endpoints.length === 1 ? endpoints[0]! : undefined
  if (only !== undefined && (tls === undefined || only.path !== undefined)) {
    // plaintext from the first byte to one place: the driver uses the socket itself
    const socket = open(only)
    watch(socket)
    const write = socket.write.bind(socket) as (...args: Array<unknown>) => boolean
    socket.write = ((...args: Array<unknown>) => {
      owed = true
      return write(...args)
    }) as typeof socket.write
    const end = socket.end.bind(socket) as (...args: Array<unknown>) => Net.Socket
    socket.end = ((...args: Array<unknown>) => {
      ended = true
      return end(...args)
    }) as typeof socket.end
    socket.on("data", onRead)
    return socket
  }

  let raw: Net.Socket | undefined
  let current: Duplex | undefined
  const pending: Array<{ readonly chunk: Buffer; readonly callback: (error?: Error | null) => void }> = []
  let pendingEnd: ((error?: Error | null) => void) | undefined
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      owed = true
      if (current === undefined) pending.push({ chunk, callback })
      else current.write(chunk, callback)
    },
    final(callback) {
      ended = true
      if (current === undefined) pendingEnd = callback
      else current.end(callback)
    },
    read() {
      current?.resume()
    },
    destroy(error, callback) {
      current?.destroy()
      raw?.destroy()
      callback(error)
    }
  })
  const failWith = (error: Error) => {
    if (!duplex.destroyed) duplex.destroy(error)
  }
  const ready = (stream: Duplex) => {
    current = stream
    stream.on("data", (chunk: Buffer) => {
      onRead(chunk)
      if (!duplex.push(chunk)) stream.pause()
    })
    stream.on("end", () => duplex.push(null))
    stream.on("error", failWith)
    stream.on("close", () => {
      if (!duplex.destroyed) duplex.destroy()
    })
    for (const { callback, chunk } of pending.splice(0)) stream.write(chunk, callback)
    if (pendingEnd !== undefined) stream.end(pendingEnd)
  }
  const negotiate = (socket: Net.Socket, e: Endpoint, plan: PgTls.TlsPlan) => {
    socket.write(sslRequest)
    socket.once("data", (answer: Buffer) => {
      socket.pause()
      const code = answer[0]
      if (code === 0x53 /* S */ && answer.length === 1) {
        const secure = Tls.connect({
          ...plan.options,
          socket,
          host: e.name,
          servername: PgTls.servername(e.name, plan.sni)
        })
        secure.once("secureConnect", () => ready(secure))
        secure.on("error", (error) => failWith(new Error(`TLS with ${where(e)} (sslmode=${plan.sslmode}): ${error.message}`)))
        return
      }
      if (code === 0x4e /* N */ && answer.length === 1) {
        if (plan.required) {
          return failWith(new Error(`the server at ${where(e)} does not offer TLS, and sslmode=${plan.sslmode} requires it`))
        }
        socket.resume()
        return ready(socket)
      }
      failWith(new Error(`the server at ${where(e)} answered the TLS request with ${JSON.stringify(answer.subarray(0, 1).toString("latin1"))}`))
    })
  }
  const order = [...endpoints]
  const attempt = (i: number) => {
    const e = order[i]!
    const socket = open(e)
    raw = socket
    watch(socket)
    let connected = false
    socket.once("connect", () => {
      connected = true
      if (tls !== undefined && e.path === undefined) negotiate(socket, e, tls)
      else ready(socket)
    })
    socket.once("close", () => {
      if (connected && current === undefined) failWith(new Error(`the server at ${where(e)} closed the connection during the TLS request`))
    })
    socket.on("error", (error) => {
      if (!connected && i + 1 < order.length) {
        socket.destroy()
        return attempt(i + 1)
      }
      failWith(error)
    })
  }
  attempt(0)
  return duplex
}

const shuffled = <A>(items: ReadonlyArray<A>): Array<A> => {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/** The pool's settings for a resolved connection: every field explicit, TLS and the watch in the stream. */
export const poolConfig = (c: ConnectionString.Connection, options: SessionOptions): PgClient.PgPoolConfig => {
  const timeout = options.timeoutSeconds ?? defaultTimeoutSeconds
  const tls = PgTls.plan(c)
  const endpoints = c.targets.map(endpointOf)
  const first = c.targets[0]!
  return {
    host: first.address,
    port: first.port,
    username: c.user,
    database: c.dbname,
    ...(c.password === undefined ? {} : { password: Redacted.make(c.password) }),
    ssl: false,
    maxConnections: options.maxConnections,
    connectTimeout: `${c.connectTimeout ?? Math.min(10, timeout)} seconds`,
    applicationName: c.applicationName,
    ...(c.options === undefined ? {} : { startupOptions: c.options }),
    startupParameters: {
      statement_timeout: `${timeout}s`,
      idle_in_transaction_session_timeout: `${timeout}s`,
      ...(options.readOnly === true ? { default_transaction_read_only: "on" } : {})
    },
    stream: () =>
      watchedSocket(c.loadBalance ? shuffled(endpoints) : endpoints, (timeout + graceSeconds) * 1000, tls)
  }
}

/** The connection a connection string names, libpq's way (see ConnectionString.resolve). */
export const connection = (dsn: Redacted.Redacted<string>, options: SessionOptions): ConnectionString.Connection =>
  ConnectionString.resolve(Redacted.value(dsn), {
    env: options.env,
    applicationName: options.applicationName ?? "lo-migrate",
    pgCa: options.pgCa
  })

const setupError = (cause: unknown) =>
  new SqlError.SqlError({
    reason: new SqlError.ConnectionError({
      cause: cause instanceof Error ? cause : new Error(String(cause)),
      message: "PgConnection: the connection settings cannot be used",
      operation: "connect"
    })
  })

/**
 * The pool for a connection string (URL or keyword/value DSN, "" for the environment alone): resolved
 * when the layer is built, the password file's warnings logged as libpq prints them.
 */
export const layer = (dsn: Redacted.Redacted<string>, options: SessionOptions) =>
  Layer.unwrap(Effect.gen(function*() {
    const resolved = yield* Effect.try({
      try: () => {
        const c = connection(dsn, options)
        return { c, config: poolConfig(c, options) }
      },
      catch: setupError
    })
    for (const warning of resolved.c.warnings) yield* Effect.logWarning(warning)
    return PgClient.layer(resolved.config)
  }))
