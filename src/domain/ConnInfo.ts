/**
 * libpq's connection strings, parsed as libpq parses them (fe-connect.c: conninfo_parse and
 * conninfo_uri_parse_options), and its `PG*` environment variables as the defaults of what a string
 * leaves out (conninfo_add_defaults). Pure: no file, no socket. postgres/ConnectionString.ts adds
 * what needs the machine (default socket directory, OS user, password file); Settings.ts uses this to
 * refuse a bad setting before any work, naming the flag and never echoing a value that may be a password.
 *
 * Both forms end as the same keyword map:
 * - URLs `postgresql://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`
 *   (`postgres://` too): percent-decoding everywhere, `[v6]` hosts, an empty host (socket or PGHOST),
 *   `?host=/dir` for a socket directory, any keyword as a query parameter, `ssl=true` as
 *   `sslmode=require` (libpq's JDBC compatibility);
 * - keyword/value DSNs `host=db port=5432 dbname='my db'`: spaces around `=`, single quotes, `\'` and
 *   `\\` inside quotes, `\` escaping the next character outside.
 */
import { Data } from "effect"

export type Env = Readonly<Record<string, string | undefined>>

export class ConnInfoError extends Data.TaggedError("ConnInfoError")<{
  readonly problem: string
}> {
  override get message() {
    return this.problem
  }
}

const fail = (problem: string): never => {
  throw new ConnInfoError({ problem })
}

/** Keywords the tool uses. */
const used = [
  "host", "hostaddr", "port", "dbname", "user", "password", "passfile", "sslmode", "sslrootcert", "sslsni",
  "ssl_min_protocol_version", "ssl_max_protocol_version", "application_name", "fallback_application_name",
  "connect_timeout", "options", "client_encoding", "target_session_attrs", "load_balance_hosts"
] as const

/**
 * Keywords accepted and left alone: the tool sets TCP keepalive and its own timeouts (`--pg-timeout`),
 * compression is gone from PostgreSQL, GSSAPI encryption and channel binding are only tried by libpq
 * (`prefer`), never needed; their `require` values are refused by `check`.
 */
const ignored = [
  "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout", "sslcompression",
  "gssencmode", "channel_binding", "sslnegotiation"
] as const

/** libpq keywords the driver cannot honour: refused by name rather than dropped. */
const unsupported: Readonly<Record<string, string>> = {
  service: "connection service files (pg_service.conf) are not supported: give the settings themselves",
  sslcert: "client certificates are not supported",
  sslkey: "client certificates are not supported",
  sslpassword: "client certificates are not supported",
  sslcertmode: "client certificates are not supported",
  sslcrl: "certificate revocation lists are not supported",
  sslcrldir: "certificate revocation lists are not supported",
  requirepeer: "requirepeer is not supported",
  krbsrvname: "Kerberos/GSSAPI authentication is not supported",
  gsslib: "Kerberos/GSSAPI authentication is not supported",
  gssdelegation: "Kerberos/GSSAPI authentication is not supported",
  replication: "replication connections are not supported",
  require_auth: "require_auth is not supported"
}

const known = new Set<string>([...used, ...ignored, ...Object.keys(unsupported)])

/** The environment variable libpq reads for each keyword (libpq's PQconninfoOptions). */
export const envVariables: Readonly<Record<string, string>> = {
  host: "PGHOST",
  hostaddr: "PGHOSTADDR",
  port: "PGPORT",
  dbname: "PGDATABASE",
  user: "PGUSER",
  password: "PGPASSWORD",
  passfile: "PGPASSFILE",
  options: "PGOPTIONS",
  application_name: "PGAPPNAME",
  sslmode: "PGSSLMODE",
  sslrootcert: "PGSSLROOTCERT",
  sslsni: "PGSSLSNI",
  ssl_min_protocol_version: "PGSSLMINPROTOCOLVERSION",
  ssl_max_protocol_version: "PGSSLMAXPROTOCOLVERSION",
  connect_timeout: "PGCONNECT_TIMEOUT",
  client_encoding: "PGCLIENTENCODING",
  target_session_attrs: "PGTARGETSESSIONATTRS",
  load_balance_hosts: "PGLOADBALANCEHOSTS",
  gssencmode: "PGGSSENCMODE",
  channel_binding: "PGCHANNELBINDING",
  sslnegotiation: "PGSSLNEGOTIATION",
  service: "PGSERVICE",
  sslcert: "PGSSLCERT",
  sslkey: "PGSSLKEY",
  sslcertmode: "PGSSLCERTMODE",
  sslcrl: "PGSSLCRL",
  sslcrldir: "PGSSLCRLDIR",
  requirepeer: "PGREQUIREPEER",
  krbsrvname: "PGKRBSRVNAME",
  gsslib: "PGGSSLIB",
  require_auth: "PGREQUIREAUTH"
}

/** The variables that alone say where to connect: with one of them set, `--pg-url` may be left out. */
export const enoughVariables = ["PGHOST", "PGHOSTADDR", "PGDATABASE"] as const

export const enoughInEnv = (env: Env): boolean => enoughVariables.some((v) => (env[v] ?? "") !== "")

export const isUri = (text: string): boolean => text.startsWith("postgresql://") || text.startsWith("postgres://")

/** libpq's conninfo_uri_decode: `%XX` only (`+` is a plus), `%00` refused. */
const uriDecode = (text: string, what: string): string => {
  const bytes: Array<number> = []
  const encoder = new TextEncoder()
  for (let i = 0; i < text.length;) {
    if (text[i] === "%") {
      const hex = text.slice(i + 1, i + 3)
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) fail(`invalid percent-encoding in the URL's ${what}`)
      const byte = parseInt(hex, 16)
      if (byte === 0) fail(`%00 is not allowed in the URL's ${what}`)
      bytes.push(byte)
      i += 3
    } else {
      const cp = text.codePointAt(i)!
      const ch = String.fromCodePoint(cp)
      for (const b of encoder.encode(ch)) bytes.push(b)
      i += ch.length
    }
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes))
  } catch {
    return fail(`the URL's ${what} is not valid UTF-8 once decoded`)
  }
}

const store = (out: Map<string, string>, key: string, value: string, where: string) => {
  if (!known.has(key)) {
    fail(`unknown connection option "${key}"${where} (the keywords the tool takes are listed in docs/connections.md)`)
  }
  out.set(key, value)
}

/** A URL, by libpq's rules. */
const parseUri = (uri: string): Map<string, string> => {
  const out = new Map<string, string>()
  const s = uri.slice(uri.startsWith("postgresql://") ? "postgresql://".length : "postgres://".length)
  let p = 0
  // user[:password]@ : looked for up to the first "/" (libpq does not stop at "?")
  let q = p
  while (q < s.length && s[q] !== "@" && s[q] !== "/") q++
  // an "@" past that "/" is almost always a password with a raw "/": libpq would take part of the
  // password for a host or a database name (and print it); refuse instead, echoing nothing
  const queryAt = s.indexOf("?")
  if (s[q] === "/" && s.slice(q, queryAt < 0 ? undefined : queryAt).includes("@")) {
    fail(`the URL has an "@" after a "/": percent-encode "/" as %2F and "@" as %40 in the user name, password or database name`)
  }
  if (s[q] === "@") {
    let u = p
    while (s[u] !== ":" && s[u] !== "@") u++
    const user = s.slice(p, u)
    if (user !== "") out.set("user", uriDecode(user, "user name"))
    if (s[u] === ":") {
      const password = s.slice(u + 1, q)
      if (password !== "") out.set("password", uriDecode(password, "password"))
    }
    p = q + 1
  }
  // host[:port] pairs separated by commas
  const hosts: Array<string> = []
  const ports: Array<string> = []
  let end: string | undefined
  for (;;) {
    let host: string
    if (s[p] === "[") {
      const close = s.indexOf("]", p)
      if (close < 0) fail(`the URL has a "[" without its "]" around an IPv6 address`)
      host = s.slice(p + 1, close)
      if (host === "") fail("the URL has an empty IPv6 address []")
      p = close + 1
      if (p < s.length && !":/?,".includes(s[p]!)) fail(`unexpected "${s[p]}" after an IPv6 address in the URL (expected ":" or "/")`)
    } else {
      const start = p
      while (p < s.length && !":/?,".includes(s[p]!)) p++
      host = s.slice(start, p)
    }
    hosts.push(host)
    let port = ""
    if (s[p] === ":") {
      const start = ++p
      while (p < s.length && !"/?,".includes(s[p]!)) p++
      port = s.slice(start, p)
    }
    ports.push(port)
    end = s[p]
    if (end !== ",") break
    p++
  }
  const hostList = hosts.join(",")
  const portList = hosts.length > 1 || ports[0] !== "" ? ports.join(",") : ""
  if (hostList !== "") out.set("host", uriDecode(hostList, "host"))
  if (portList !== "") out.set("port", uriDecode(portList, "port"))
  if (end === "/") {
    const start = ++p
    while (p < s.length && s[p] !== "?") p++
    const dbname = s.slice(start, p)
    // an empty path sets nothing, so PGDATABASE still applies
    if (dbname !== "") out.set("dbname", uriDecode(dbname, "database name"))
    end = s[p]
  }
  if (end === "?") {
    const params = s.slice(p + 1)
    if (params !== "") {
      for (const param of params.split("&")) {
        const eq = param.indexOf("=")
        if (eq < 0) fail(`the URL's query parameter "${param.slice(0, 40)}" has no "="`)
        if (param.indexOf("=", eq + 1) >= 0) fail(`the URL's query parameter "${param.slice(0, eq)}" has a second "="`)
        let key = uriDecode(param.slice(0, eq), "query parameter name")
        let value = uriDecode(param.slice(eq + 1), `parameter ${key}`)
        if (key === "ssl" && value === "true") {
          key = "sslmode"
          value = "require"
        }
        store(out, key, value, " in the URL's query")
      }
    }
  }
  return out
}

const isSpace = (c: string | undefined) => c !== undefined && /\s/.test(c)

/** A keyword/value DSN, by libpq's rules (conninfo_parse). */
const parseKeywordValue = (dsn: string): Map<string, string> => {
  const out = new Map<string, string>()
  let i = 0
  const n = dsn.length
  while (i < n) {
    if (isSpace(dsn[i])) {
      i++
      continue
    }
    const keyStart = i
    while (i < n && dsn[i] !== "=" && !isSpace(dsn[i])) i++
    const key = dsn.slice(keyStart, i)
    while (isSpace(dsn[i])) i++
    if (dsn[i] !== "=") {
      // never echo the word: it may be a password typed without its keyword
      fail(
        `a word without "=" at character ${keyStart + 1} of the connection string ` +
          `(key=value pairs separated by spaces; a value with spaces in single quotes: key='a b')`
      )
    }
    i++
    while (isSpace(dsn[i])) i++
    let value = ""
    if (dsn[i] === "'") {
      i++
      for (;;) {
        if (i >= n) fail(`the quoted value of "${key}" in the connection string has no closing quote`)
        const c = dsn[i]!
        if (c === "\\") {
          i++
          if (i < n) value += dsn[i++]
          continue
        }
        if (c === "'") {
          i++
          break
        }
        value += c
        i++
      }
    } else {
      while (i < n && !isSpace(dsn[i])) {
        if (dsn[i] === "\\") {
          i++
          if (i < n) value += dsn[i++]
        } else value += dsn[i++]
      }
    }
    store(out, key, value, "")
  }
  return out
}

/**
 * The keywords a connection string sets: a URL if it starts with postgresql:// or postgres://,
 * else a keyword/value DSN ("" sets nothing). Throws ConnInfoError.
 */
export const parse = (text: string): Map<string, string> => {
  const trimmed = text.trim()
  if (isUri(trimmed)) return parseUri(trimmed)
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    fail("must start with postgres:// or postgresql:// (or be libpq's key=value form: host=... dbname=...)")
  }
  return parseKeywordValue(trimmed)
}

/** A setting and where it came from: "the connection string" or the environment variable's name. */
export interface Setting {
  readonly value: string
  readonly from: string
}

export type Settings = ReadonlyMap<string, Setting>

/** The string's keywords, then the PG* variables for every keyword it leaves out (empty ones count as unset). */
export const withEnv = (parsed: ReadonlyMap<string, string>, env: Env): Map<string, Setting> => {
  const out = new Map<string, Setting>()
  for (const [key, value] of parsed) out.set(key, { value, from: "the connection string" })
  for (const [key, variable] of Object.entries(envVariables)) {
    const value = env[variable]
    if (!out.has(key) && value !== undefined && value !== "") out.set(key, { value, from: variable })
  }
  return out
}

export const sslModes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const
export type SslMode = typeof sslModes[number]

const tlsVersions = ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] as const

const where = (s: Setting) => s.from === "the connection string" ? "" : ` (from ${s.from})`

/** One host of a connection: `host` "" means libpq's default (a socket directory or localhost). */
export interface HostSpec {
  readonly host: string
  readonly hostaddr: string | undefined
  readonly port: number
}

const splitList = (s: Setting | undefined): Array<string> | undefined => s === undefined ? undefined : s.value.split(",")

/** The hosts to try, in order, with their ports (libpq: one port for all, or one per host). */
export const hostsOf = (settings: Settings): ReadonlyArray<HostSpec> => {
  const hostList = splitList(settings.get("host"))
  const addrList = splitList(settings.get("hostaddr"))
  const portSetting = settings.get("port")
  const portList = splitList(portSetting) ?? [""]
  const count = Math.max(hostList?.length ?? 1, addrList?.length ?? 1)
  if (hostList !== undefined && addrList !== undefined && hostList.length !== addrList.length) {
    fail(`${hostList.length} hosts but ${addrList.length} hostaddr values: give one hostaddr per host`)
  }
  if (portList.length !== 1 && portList.length !== count) {
    fail(`${portList.length} ports for ${count} hosts: give one port, or one per host`)
  }
  return Array.from({ length: count }, (_, i) => {
    const raw = (portList.length === 1 ? portList[0]! : portList[i]!).trim()
    let port = 5432
    if (raw !== "") {
      port = Number(raw)
      if (!/^\d+$/.test(raw) || port < 1 || port > 65535) {
        // not echoed: in a URL with a raw ":" or "/" in the password, the "port" is part of the password
        fail(`invalid port${portSetting === undefined ? "" : where(portSetting)}: a number from 1 to 65535`)
      }
    }
    const addr = addrList?.[i]?.trim()
    return { host: hostList?.[i]?.trim() ?? "", hostaddr: addr === undefined || addr === "" ? undefined : addr, port }
  })
}

const oneOf = (settings: Settings, key: string, allowed: ReadonlyArray<string>, why: string) => {
  const s = settings.get(key)
  if (s !== undefined && !allowed.includes(s.value)) {
    fail(`${key}=${s.value}${where(s)}: ${why}`)
  }
}

/** Refuses what the tool cannot honour, naming the keyword and where it came from. Throws ConnInfoError. */
export const check = (settings: Settings): Settings => {
  for (const [key, s] of settings) {
    const why = unsupported[key]
    if (why !== undefined) fail(`${key}${where(s)}: ${why}`)
  }
  oneOf(settings, "sslmode", sslModes, `sslmode is one of ${sslModes.join(", ")}`)
  oneOf(settings, "sslsni", ["0", "1"], "sslsni is 0 or 1")
  oneOf(settings, "ssl_min_protocol_version", tlsVersions, `one of ${tlsVersions.join(", ")}`)
  oneOf(settings, "ssl_max_protocol_version", tlsVersions, `one of ${tlsVersions.join(", ")}`)
  oneOf(settings, "target_session_attrs", ["any"], "the tool connects to the first host that answers (only \"any\")")
  oneOf(settings, "load_balance_hosts", ["disable", "random"], "load_balance_hosts is disable or random")
  oneOf(settings, "gssencmode", ["disable", "prefer", "allow"], "GSSAPI encryption is not supported (the driver speaks TLS)")
  oneOf(settings, "channel_binding", ["disable", "prefer"], "channel binding is not supported by the driver")
  oneOf(settings, "sslnegotiation", ["postgres"], "only PostgreSQL's own TLS negotiation (postgres) is supported")
  const encoding = settings.get("client_encoding")
  if (encoding !== undefined && !/^(utf-?8|auto)$/i.test(encoding.value)) {
    fail(`client_encoding=${encoding.value}${where(encoding)}: the driver speaks UTF8 only`)
  }
  const timeout = settings.get("connect_timeout")
  if (timeout !== undefined && !/^\s*-?\d+\s*$/.test(timeout.value)) {
    fail(`connect_timeout "${timeout.value}"${where(timeout)} is not a whole number of seconds`)
  }
  const hosts = hostsOf(settings)
  for (const h of hosts) {
    if (h.hostaddr !== undefined && !/^[0-9.]+$|:/.test(h.hostaddr)) {
      fail(`hostaddr "${h.hostaddr}" is not a numeric IP address (host= takes names)`)
    }
  }
  return settings
}

/** parse, withEnv, check: the settings of `text` in `env`, or a ConnInfoError. */
export const validate = (text: string, env: Env): Settings => check(withEnv(parse(text), env))
