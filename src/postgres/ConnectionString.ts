/**
 * A connection string as libpq would connect with it: the string (URL or keyword/value DSN, parsed by
 * domain/ConnInfo.ts), the `PG*` environment variables for what it leaves out, then libpq's defaults
 * (port 5432, the OS user, the database named like the user, the default socket directory) and the
 * password file (`passfile`, `PGPASSFILE`, `~/.pgpass`) when no password is given. The result is what
 * PgSession hands the driver: every field explicit, so the driver's own URL parsing and defaults play no
 * part. docs/connections.md has the table of forms, variables, precedence and sslmode meanings.
 */
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import * as ConnInfo from "../domain/ConnInfo.ts"

export { ConnInfoError as ConnectionStringError } from "../domain/ConnInfo.ts"
export type { Env } from "../domain/ConnInfo.ts"

/**
 * Where libpq builds look for the server's socket when no host is given: Debian's and upstream's
 * DEFAULT_PGSOCKET_DIR. The first that holds `.s.PGSQL.<port>` is used, else localhost over TCP.
 */
export const defaultSocketDirs: ReadonlyArray<string> = ["/var/run/postgresql", "/run/postgresql", "/tmp"]

/** One server to try: a socket directory, or a TCP host (`address` is hostaddr, else the name). */
export interface Target {
  /** the host as given (name, address or socket directory); "localhost" or the socket dir when defaulted */
  readonly host: string
  readonly port: number
  /** the socket directory of a Unix-domain connection */
  readonly socketDir: string | undefined
  /** what TCP connects to: hostaddr if given, else host */
  readonly address: string
}

export interface Connection {
  readonly targets: ReadonlyArray<Target>
  readonly user: string
  readonly dbname: string
  readonly password: string | undefined
  /** where the password came from, for messages: "the connection string", "PGPASSWORD", "password file X" */
  readonly passwordFrom: string | undefined
  readonly sslmode: ConnInfo.SslMode
  /** the root certificate file, "system" (Node's trusted CAs), or none */
  readonly sslrootcert: string | undefined
  /** true when sslrootcert was given (not the default ~/.postgresql/root.crt): a missing file is an error */
  readonly sslrootcertGiven: boolean
  readonly sslsni: boolean
  readonly sslMinVersion: string | undefined
  readonly sslMaxVersion: string | undefined
  readonly applicationName: string
  /** seconds; undefined: the tool's default */
  readonly connectTimeout: number | undefined
  readonly options: string | undefined
  readonly loadBalance: boolean
  /** password file problems libpq would print (a group/world readable file is ignored) */
  readonly warnings: ReadonlyArray<string>
}

export interface ResolveOptions {
  /** libpq's variables (default process.env); HOME is read for ~/.pgpass and ~/.postgresql/root.crt */
  readonly env?: ConnInfo.Env | undefined
  /** the `application_name` when neither the string nor PGAPPNAME sets one */
  readonly applicationName?: string | undefined
  /** `--pg-ca FILE`: the root certificate; sslmode defaults to verify-full with it */
  readonly pgCa?: string | undefined
  /** default socket directories (tests) */
  readonly socketDirs?: ReadonlyArray<string> | undefined
  /** false: do not read the password file (descriptions) */
  readonly readPassFile?: boolean | undefined
}

const isSocketDir = (host: string) => host.startsWith("/")

const homeOf = (env: ConnInfo.Env) => env.HOME !== undefined && env.HOME !== "" ? env.HOME : NodeOs.homedir()

const osUser = (): string => {
  try {
    return NodeOs.userInfo().username
  } catch {
    return "postgres"
  }
}

/** One field of a .pgpass line against a value: `*` matches anything, `\` escapes (libpq's pwdfMatchesString). */
const matchField = (line: string, at: number, value: string): number | undefined => {
  if (line[at] === "*" && line[at + 1] === ":") return at + 2
  let i = at
  let j = 0
  while (i < line.length) {
    let escaped = false
    if (line[i] === "\\") {
      i++
      escaped = true
    }
    if (i >= line.length) return undefined
    if (line[i] === ":" && !escaped && j === value.length) return i + 1
    if (j >= value.length || line[i] !== value[j]) return undefined
    i++
    j++
  }
  return undefined
}

/** The password of the first line that matches, de-escaped up to its first unescaped ":" . */
export const passwordFromLines = (
  text: string,
  key: { readonly host: string; readonly port: string; readonly dbname: string; readonly user: string }
): string | undefined => {
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "")
    if (line === "" || line.startsWith("#")) continue
    let at: number | undefined = 0
    for (const value of [key.host, key.port, key.dbname, key.user]) {
      at = matchField(line, at, value)
      if (at === undefined) break
    }
    if (at === undefined) continue
    let password = ""
    for (let i = at; i < line.length && line[i] !== ":"; i++) {
      if (line[i] === "\\" && i + 1 < line.length) i++
      password += line[i]
    }
    return password
  }
  return undefined
}

/** The password file's text, or why it is not used (libpq: missing is silent, group/world access is a warning). */
const readPassFile = (path: string): { readonly text?: string; readonly warning?: string } => {
  let stat: NodeFs.Stats
  try {
    stat = NodeFs.statSync(path)
  } catch {
    return {}
  }
  if (!stat.isFile()) return { warning: `password file "${path}" is not a plain file: ignored` }
  if ((stat.mode & 0o077) !== 0) {
    return {
      warning: `password file "${path}" has group or world access (mode ${(stat.mode & 0o777).toString(8).padStart(4, "0")}): ` +
        `ignored; permissions should be u=rw (0600) or less`
    }
  }
  try {
    return { text: NodeFs.readFileSync(path, "utf8") }
  } catch (e) {
    return { warning: `password file "${path}" cannot be read: ${(e as Error).message}` }
  }
}

/** The connection `text` describes in `env`, by libpq's rules. Throws ConnectionStringError (ConnInfoError). */
export const resolve = (text: string, options: ResolveOptions = {}): Connection => {
  const env = options.env ?? process.env
  const settings = ConnInfo.validate(text, env)
  const get = (key: string) => settings.get(key)?.value
  const socketDirs = options.socketDirs ?? defaultSocketDirs
  const warnings: Array<string> = []

  const targets = ConnInfo.hostsOf(settings).map((spec): Target => {
    if (spec.hostaddr !== undefined) {
      return { host: spec.host === "" ? spec.hostaddr : spec.host, port: spec.port, socketDir: undefined, address: spec.hostaddr }
    }
    if (spec.host === "") {
      const dir = socketDirs.find((d) => NodeFs.existsSync(NodePath.join(d, `.s.PGSQL.${spec.port}`)))
      return dir === undefined
        ? { host: "localhost", port: spec.port, socketDir: undefined, address: "localhost" }
        : { host: dir, port: spec.port, socketDir: dir, address: dir }
    }
    return isSocketDir(spec.host)
      ? { host: spec.host, port: spec.port, socketDir: spec.host, address: spec.host }
      : { host: spec.host, port: spec.port, socketDir: undefined, address: spec.host }
  })

  const user = get("user") || osUser()
  const dbname = get("dbname") || user

  let password = get("password") || undefined
  let passwordFrom = password === undefined ? undefined : settings.get("password")!.from
  if (password === undefined && options.readPassFile !== false) {
    const file = get("passfile") || NodePath.join(homeOf(env), ".pgpass")
    const read = readPassFile(file)
    if (read.warning !== undefined) warnings.push(read.warning)
    if (read.text !== undefined) {
      const found = new Set<string | undefined>()
      for (const t of targets) {
        // libpq: "localhost" stands for the default socket directory (and for no host at all)
        const host = t.socketDir !== undefined && socketDirs.includes(t.socketDir) ? "localhost" : t.host
        found.add(passwordFromLines(read.text, { host, port: String(t.port), dbname, user }))
      }
      if (found.size > 1) {
        throw new ConnInfo.ConnInfoError({
          problem: `the password file ${file} gives the hosts different passwords; the driver uses one password for all: ` +
            `give it in the connection string or PGPASSWORD, or one host`
        })
      }
      const [only] = found
      if (only !== undefined && only !== "") {
        password = only
        passwordFrom = `password file ${file}`
      }
    }
  }

  const rootGiven = options.pgCa ?? get("sslrootcert")
  const defaultRoot = NodePath.join(homeOf(env), ".postgresql", "root.crt")
  const sslrootcert = rootGiven ?? (NodeFs.existsSync(defaultRoot) ? defaultRoot : undefined)
  // --pg-ca is a flag: it beats PGSSLMODE, not an sslmode the connection string names
  const sslmodeSetting = settings.get("sslmode")
  const sslmodeGiven = sslmodeSetting === undefined || (options.pgCa !== undefined && sslmodeSetting.from !== "the connection string")
    ? undefined
    : sslmodeSetting.value as ConnInfo.SslMode
  const sslmode: ConnInfo.SslMode = sslmodeGiven ?? (options.pgCa !== undefined || rootGiven === "system" ? "verify-full" : "prefer")
  if (rootGiven === "system" && sslmode !== "verify-full") {
    throw new ConnInfo.ConnInfoError({ problem: `sslrootcert=system needs sslmode=verify-full (libpq's rule), not ${sslmode}` })
  }

  const timeout = get("connect_timeout")
  const seconds = timeout === undefined ? 0 : Number(timeout.trim())
  return {
    targets,
    user,
    dbname,
    password,
    passwordFrom,
    sslmode,
    sslrootcert,
    sslrootcertGiven: rootGiven !== undefined,
    sslsni: get("sslsni") !== "0",
    sslMinVersion: get("ssl_min_protocol_version"),
    sslMaxVersion: get("ssl_max_protocol_version"),
    applicationName: get("application_name") || get("fallback_application_name") || options.applicationName || "lo-migrate",
    // libpq: 0, negative or none waits for ever; the tool keeps its own bound then. At least 2 s, as libpq.
    connectTimeout: seconds > 0 ? Math.max(2, seconds) : undefined,
    options: get("options") || undefined,
    loadBalance: get("load_balance_hosts") === "random",
    warnings
  }
}

const showHost = (t: Target) => t.socketDir === undefined && t.host.includes(":") ? `[${t.host}]` : t.host

/** Where a connection goes, for messages: `user@host:port/db` (hosts joined by ","), never the password. */
export const describe = (c: Connection): string =>
  `${c.user}@${c.targets.map((t) => `${showHost(t)}:${t.port}`).join(",")}/${c.dbname}`

/** `describe` for a connection string; "the configured server" when it cannot be read. */
export const describeString = (text: string, env: ConnInfo.Env = process.env): string => {
  try {
    return describe(resolve(text, { env, readPassFile: false }))
  } catch {
    return "the configured server"
  }
}
