/**
 * libpq's connection strings, as psql, pg_dump and the zodb-convert guide write them: keyword/value
 * DSNs (`dbname=zodb user=zodb host=localhost port=5432`, values in single quotes with `\'` and `\\`)
 * and URLs, with the `PG*` environment variables filling what the string leaves out. The result is
 * one postgresql:// URL, the form the pool takes (PgSession.poolConfig).
 */
import { Data } from "effect"

export class ConnectionStringError extends Data.TaggedError("ConnectionStringError")<{
  readonly problem: string
}> {
  override get message() {
    return this.problem
  }
}

/** The keywords libpq accepts that a URL can carry (others are refused by name, never dropped). */
const keywords = new Set([
  "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey",
  "application_name", "connect_timeout", "options", "target_session_attrs", "passfile", "service"
])

/** Parses a keyword/value DSN by libpq's rules (conninfo_parse): `key = value`, whitespace between pairs. */
export const parseKeywords = (dsn: string): Map<string, string> => {
  const out = new Map<string, string>()
  let i = 0
  const n = dsn.length
  const space = (c: string | undefined) => c !== undefined && /\s/.test(c)
  while (i < n) {
    while (space(dsn[i])) i++
    if (i >= n) break
    const keyStart = i
    while (i < n && dsn[i] !== "=" && !space(dsn[i])) i++
    const key = dsn.slice(keyStart, i)
    while (space(dsn[i])) i++
    if (dsn[i] !== "=") throw new ConnectionStringError({ problem: `missing "=" after "${key}" in the connection string` })
    i++
    while (space(dsn[i])) i++
    let value = ""
    if (dsn[i] === "'") {
      i++
      for (;;) {
        if (i >= n) throw new ConnectionStringError({ problem: `unterminated quoted value for "${key}" in the connection string` })
        const c = dsn[i]!
        if (c === "\\" && i + 1 < n) {
          value += dsn[i + 1]
          i += 2
        } else if (c === "'") {
          i++
          break
        } else {
          value += c
          i++
        }
      }
    } else {
      while (i < n && !space(dsn[i])) {
        if (dsn[i] === "\\" && i + 1 < n) {
          value += dsn[i + 1]
          i += 2
        } else value += dsn[i++]
      }
    }
    if (!keywords.has(key)) {
      throw new ConnectionStringError({ problem: `unknown connection option "${key}" (libpq's keywords: ${[...keywords].join(", ")})` })
    }
    out.set(key, value)
  }
  return out
}

const isUrl = (s: string) => /^postgres(ql)?:\/\//i.test(s.trim())

/** The environment variables libpq reads for what the string leaves out. */
const fromEnv: ReadonlyArray<readonly [string, string]> = [
  ["host", "PGHOST"],
  ["port", "PGPORT"],
  ["user", "PGUSER"],
  ["password", "PGPASSWORD"],
  ["dbname", "PGDATABASE"],
  ["sslmode", "PGSSLMODE"],
  ["sslrootcert", "PGSSLROOTCERT"],
  ["application_name", "PGAPPNAME"],
  ["connect_timeout", "PGCONNECT_TIMEOUT"]
]

/**
 * One postgresql:// URL for a DSN or URL; `env` (libpq's PG* variables) fills what it leaves out. A
 * socket directory (a host starting with "/") travels as the `host` query parameter.
 */
export const toUrl = (dsn: string, env: Readonly<Record<string, string | undefined>> = {}): string => {
  const settings = new Map<string, string>()
  if (isUrl(dsn)) {
    let url: URL
    try {
      url = new URL(dsn.trim())
    } catch {
      throw new ConnectionStringError({ problem: "is not a valid postgresql:// URL" })
    }
    if (url.hostname !== "") settings.set("host", decodeURIComponent(url.hostname))
    if (url.port !== "") settings.set("port", url.port)
    if (url.username !== "") settings.set("user", decodeURIComponent(url.username))
    if (url.password !== "") settings.set("password", decodeURIComponent(url.password))
    const db = decodeURIComponent(url.pathname.replace(/^\//, ""))
    if (db !== "") settings.set("dbname", db)
    for (const [k, v] of url.searchParams) settings.set(k, v)
  } else {
    for (const [k, v] of parseKeywords(dsn)) settings.set(k, v)
  }
  for (const [key, variable] of fromEnv) {
    const value = env[variable]
    if (!settings.has(key) && value !== undefined && value !== "") settings.set(key, value)
  }
  const host = settings.get("hostaddr") ?? settings.get("host") ?? "localhost"
  const socket = host.startsWith("/")
  const user = settings.get("user")
  const password = settings.get("password")
  const credentials = user === undefined
    ? ""
    : `${encodeURIComponent(user)}${password === undefined ? "" : `:${encodeURIComponent(password)}`}@`
  const hostPart = socket ? "localhost" : host.includes(":") ? `[${host}]` : host
  const port = settings.get("port")
  const query = new URLSearchParams()
  if (socket) query.set("host", host)
  for (const key of ["sslmode", "sslrootcert", "application_name", "connect_timeout", "options"]) {
    const v = settings.get(key)
    if (v !== undefined) query.set(key, v)
  }
  const q = query.toString()
  return `postgresql://${credentials}${hostPart}${port === undefined ? "" : `:${port}`}/` +
    `${encodeURIComponent(settings.get("dbname") ?? user ?? "")}${q === "" ? "" : `?${q}`}`
}
