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
 * On a plaintext session the watch knows exactly when an answer is complete (it follows the protocol's
 * message framing up to ReadyForQuery). On a TLS session it sees only ciphertext: there it notices a
 * server that sends nothing after a statement, but not an answer that stops half way (a path that
 * freezes in the middle of a large `lo_get`): that case is not bounded on TLS sessions yet, beyond the
 * second signal's hard stop (RELIABILITY.md, "Not covered").
 */
import type { PgClient } from "@effect/sql-pg"
import { Redacted } from "effect"
import * as Net from "node:net"
import { Duplex } from "node:stream"
import * as PgTls from "./PgTls.ts"

/** `--pg-timeout`'s default, in seconds. */
export const defaultTimeoutSeconds = 300

/** Seconds the client waits past `statement_timeout` before it gives a silent session up. */
export const graceSeconds = 5

export interface SessionOptions {
  readonly maxConnections: number
  readonly pgCa?: string | undefined
  /** seconds; default 300 */
  readonly timeoutSeconds?: number | undefined
}

/** Where the driver will connect for `url`: as it reads it (host or socket directory, port). */
export const targetOf = (url: string): { readonly host: string; readonly port: number; readonly ssl: boolean } => {
  const parsed = new URL(url)
  let host = parsed.hostname === "" ? "localhost" : decodeURIComponent(parsed.hostname)
  if (host.startsWith("[") && host.endsWith("]")) host = host.slice(1, -1)
  let port = parsed.port === "" ? 5432 : Number(parsed.port)
  let ssl = false
  for (const [key, value] of parsed.searchParams) {
    if (key === "host") host = value
    if (key === "port") port = Number(value)
    if (key === "sslmode") ssl = value !== "disable"
  }
  return { host, port, ssl }
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

/**
 * A socket to `target` that destroys itself once it owes an answer and nothing has moved for
 * `silenceMs`. `sslRequested`: the driver starts with an SSLRequest, answered by one unframed byte
 * ('S': TLS follows and the framing is hidden; 'N': plaintext follows). Node's TLS would take a plain
 * socket's handle over and bypass its `write` and `data`, so with TLS possible the socket is wrapped in
 * a Duplex the TLS layer must go through.
 */
export const watchedSocket = (
  target: { readonly host: string; readonly port: number },
  silenceMs: number,
  sslRequested: boolean
): Duplex => {
  const socket = target.host.startsWith("/")
    ? Net.connect({ path: `${target.host}/.s.PGSQL.${target.port}` })
    : Net.connect({ host: target.host, port: target.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 })
  let owed = false
  // undefined while the framing is unknown (TLS, or before the SSLRequest's answer)
  let framer: Framer | undefined = sslRequested ? undefined : new Framer()
  let awaitingSslAnswer = sslRequested
  const onRead = (chunk: Buffer) => {
    if (awaitingSslAnswer) {
      awaitingSslAnswer = false
      if (chunk[0] === 0x4e /* N */) {
        framer = new Framer()
        const rest = chunk.subarray(1)
        owed = rest.length > 0 && !framer.feed(rest)
        return
      }
      owed = false
      return
    }
    if (framer === undefined) {
      // TLS: a byte came back; only a statement that gets no byte at all is caught
      owed = false
      return
    }
    if (framer.feed(chunk)) owed = false
  }
  socket.setTimeout(silenceMs, () => {
    // a session closed by the driver (end, Terminate) waits for the server's FIN: on a frozen path that
    // never comes, and the half-closed socket would keep the process alive
    if (!owed && !socket.writableEnded) return
    socket.destroy(
      new Error(
        `PostgreSQL sent nothing for ${Math.round(silenceMs / 1000)} s while a statement waited for its answer ` +
          `(--pg-timeout): the session was dropped`
      )
    )
  })
  if (!sslRequested) {
    // plaintext from the first byte: the driver uses the socket itself
    const write = socket.write.bind(socket) as (...args: Array<unknown>) => boolean
    socket.write = ((...args: Array<unknown>) => {
      owed = true
      return write(...args)
    }) as typeof socket.write
    socket.on("data", onRead)
    return socket
  }
  const duplex = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      owed = true
      socket.write(chunk, callback)
    },
    final(callback) {
      socket.end(callback)
    },
    read() {
      socket.resume()
    },
    destroy(error, callback) {
      socket.destroy(error ?? undefined)
      callback(error)
    }
  })
  socket.on("data", (chunk: Buffer) => {
    onRead(chunk)
    if (!duplex.push(chunk)) socket.pause()
  })
  socket.on("end", () => duplex.push(null))
  socket.on("error", (error) => duplex.destroy(error))
  socket.on("close", () => duplex.destroy())
  return duplex
}

/** The pool's settings: the URL, TLS, the timeouts above, and `application_name` lo-migrate. */
export const poolConfig = (url: Redacted.Redacted<string>, options: SessionOptions): PgClient.PgPoolConfig => {
  const timeout = options.timeoutSeconds ?? defaultTimeoutSeconds
  const tls = PgTls.options(options.pgCa)
  const target = targetOf(Redacted.value(url))
  const sslRequested = tls.ssl !== undefined || target.ssl
  return {
    url,
    maxConnections: options.maxConnections,
    connectTimeout: `${Math.min(10, timeout)} seconds`,
    applicationName: "lo-migrate",
    startupParameters: {
      statement_timeout: `${timeout}s`,
      idle_in_transaction_session_timeout: `${timeout}s`
    },
    stream: () => watchedSocket(target, (timeout + graceSeconds) * 1000, sslRequested),
    ...tls
  }
}
