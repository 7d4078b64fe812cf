/**
 * A throwaway PostgreSQL cluster: initdb in a fresh temp dir, a free loopback port, tuned for speed
 * (no fsync), an ordinary login role for the application, and everything removed again by `stop`.
 * The tests (test/support/globalSetup.ts) and `lo-migrate demo` both use it.
 *
 * PostgreSQL refuses to run as root: then the server runs as the `postgres` OS user on a dir it owns.
 * A detached watchdog stops the server and removes the dir if this process dies without calling `stop`.
 */
import { execFileSync, spawn, type SpawnOptions } from "node:child_process"
import { randomBytes } from "node:crypto"
import {
  appendFileSync, chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync,
  writeFileSync
} from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"

export const APP_ROLE = "lomigrate"
export const ADMIN_ROLE = "postgres"
/**
 * A role that must give its password on the Unix-domain socket too (everyone else is trusted there):
 * pg_hba.conf names it; the connection tests create it (it does not exist otherwise).
 */
export const SOCKET_PASSWORD_ROLE = "lomigrate_socket_pw"

/** Where a cluster listens and how to reach it. */
export interface ClusterServer {
  /** the superuser `postgres` on the `postgres` database, with a random password */
  readonly adminUrl: string
  readonly host: string
  readonly port: number
  /** an ordinary role (no superuser, no CREATEDB), as an application would connect */
  readonly appRole: string
  readonly appPassword: string
  /** PEM of the self-signed certificate the server offers TLS with (it is its own CA), with `tls` */
  readonly caFile?: string
  /** the directory of the Unix-domain socket (`.s.PGSQL.<port>`): trust, except SOCKET_PASSWORD_ROLE */
  readonly socketDir?: string
}

export interface StartOptions {
  /** the directory with initdb and pg_ctl; default: `findPgBinDir()` */
  readonly binDir?: string | undefined
  /** temp dir name prefix */
  readonly prefix?: string | undefined
  /** prefixes warnings printed by `stop` */
  readonly name?: string | undefined
  /** also offer TLS with a self-signed certificate for 127.0.0.1 (needs the openssl CLI; skipped without) */
  readonly tls?: boolean | undefined
}

export interface Cluster {
  readonly server: ClusterServer
  /** the cluster's directory (data, log, socket), removed by `stop` */
  readonly dir: string
  /** stops the server (immediate shutdown) and removes the directory; idempotent */
  readonly stop: () => void
}

export const startCluster = async (options: StartOptions = {}): Promise<Cluster> => {
  const bin = options.binDir ?? findPgBinDir()
  if (bin === undefined) throw new Error(missingBinaries)
  // PostgreSQL refuses to run as root: then the server runs as the `postgres` OS user on a dir it owns.
  const asRoot = process.getuid?.() === 0
  const owner = asRoot ? osUser("postgres") : undefined
  const dir = mkdtempSync(join(tmpdir(), options.prefix ?? "lo-migrate-pg-"))
  const data = join(dir, "data")
  const log = join(dir, "server.log")
  const own = (path: string) => {
    if (owner !== undefined) chownSync(path, owner.uid, owner.gid)
  }
  // Runs a server binary as the user that owns the cluster; cwd = dir, because root's cwd may be
  // unreadable for `postgres` (initdb then warns or fails).
  const pg = (tool: string, args: ReadonlyArray<string>) => {
    const exe = join(bin, tool)
    const [cmd, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", exe, ...args]] : [exe, [...args]]
    return run(cmd, argv, { cwd: dir })
  }

  let watchdog: number | undefined
  let postmasterPid: number | undefined
  let stopped = false
  const stop = () => {
    if (stopped) return
    stopped = true
    if (watchdog !== undefined) {
      try { process.kill(watchdog) } catch { /* already gone */ }
    }
    if (existsSync(join(data, "postmaster.pid"))) {
      try {
        pg("pg_ctl", ["-D", data, "-m", "immediate", "-w", "-t", "30", "stop"])
      } catch (e) {
        console.warn(`[${options.name ?? "TempCluster"}] pg_ctl stop failed, sending SIGQUIT to the postmaster: ${String(e)}`)
        if (postmasterPid !== undefined) {
          try { process.kill(postmasterPid, "SIGQUIT") } catch { /* already gone */ }
        }
      }
    }
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    own(dir)
    const adminPassword = randomBytes(18).toString("base64url")
    const appPassword = randomBytes(18).toString("base64url")

    const pwfile = join(dir, "pwfile")
    writeFileSync(pwfile, `${adminPassword}\n`, { mode: 0o600 })
    own(pwfile)
    pg("initdb", [
      "-D", data, "-U", ADMIN_ROLE, `--pwfile=${pwfile}`, "-E", "UTF8", "--no-locale", "--no-sync",
      "--no-instructions"
    ])
    rmSync(pwfile)

    const tls = options.tls === true ? selfSignedCert(dir, own, options.name) : undefined

    // Appended settings win over initdb's defaults. Durability is irrelevant for a throwaway cluster.
    // The port goes on the pg_ctl command line so a port lost to a race can be retried (below).
    appendFileSync(join(data, "postgresql.conf"), [
      "",
      "# lo-migrate test cluster",
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      "fsync = off",
      "full_page_writes = off",
      "synchronous_commit = off",
      "max_connections = 200",
      "shared_buffers = 128MB",
      ...(tls === undefined ? [] : [
        // TLS offered, not required: clients without sslmode are unaffected
        "ssl = on",
        `ssl_cert_file = '${tls.cert}'`,
        `ssl_key_file = '${tls.key}'`
      ]),
      ""
    ].join("\n"))
    // Writing over the existing files keeps their owner.
    writeFileSync(join(data, "pg_hba.conf"), [
      "# TYPE  DATABASE  USER  ADDRESS       METHOD",
      `local   all       ${SOCKET_PASSWORD_ROLE}         scram-sha-256`,
      "local   all       all                 trust",
      "host    all       all   127.0.0.1/32  scram-sha-256",
      ""
    ].join("\n"))

    // A free port is only free until someone else binds it; retry with another one if startup fails.
    let port = 0
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      try {
        pg("pg_ctl", ["-D", data, "-l", log, "-o", `-p ${port}`, "-w", "-t", "60", "start"])
        break
      } catch (e) {
        if (attempt >= 3) throw new Error(`${String(e)}\n--- server.log ---\n${tail(log)}`)
      }
    }
    postmasterPid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0])
    watchdog = startWatchdog(dir, postmasterPid)

    const adminUrl = `postgres://${ADMIN_ROLE}:${adminPassword}@127.0.0.1:${port}/postgres`
    // Over TCP with the password: proves scram works before any test depends on it.
    run(findPsql(bin), [
      "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", adminUrl, "-c",
      `CREATE ROLE ${APP_ROLE} LOGIN PASSWORD '${appPassword}' NOSUPERUSER NOCREATEDB NOCREATEROLE`
    ], { cwd: dir })

    return {
      server: {
        adminUrl, host: "127.0.0.1", port, appRole: APP_ROLE, appPassword, socketDir: dir,
        ...(tls === undefined ? {} : { caFile: tls.cert })
      },
      dir,
      stop
    }
  } catch (e) {
    stop()
    throw e
  }
}

// A self-signed server certificate for 127.0.0.1 (it is its own CA), made with the openssl CLI; none
// when openssl is missing (TLS tests then skip).
const selfSignedCert = (dir: string, own: (path: string) => void, name: string | undefined) => {
  const cert = join(dir, "server.crt")
  const key = join(dir, "server.key")
  try {
    run("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
      "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
    ], { cwd: dir })
  } catch (e) {
    console.warn(`[${name ?? "TempCluster"}] no TLS: ${String(e).split("\n")[0]}`)
    return undefined
  }
  chmodSync(key, 0o600)
  chmodSync(cert, 0o644)
  own(key)
  own(cert)
  return { cert, key }
}

// If the test runner dies without running the teardown (SIGKILL, crash, Ctrl-C before teardown), nothing
// else would stop the postmaster: pg_ctl detaches it into its own session. This detached shell polls the
// runner and, once it is gone, stops the server (SIGQUIT = immediate shutdown) and deletes the dir.
// It also exits by itself once the teardown has removed the dir.
const startWatchdog = (dir: string, postmasterPid: number): number | undefined => {
  const script = [
    "while kill -0 \"$1\" 2>/dev/null && [ -d \"$2\" ]; do sleep 1; done",
    "if [ -d \"$2\" ]; then",
    "  kill -QUIT \"$3\" 2>/dev/null",
    "  for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 \"$3\" 2>/dev/null || break; sleep 1; done",
    "  rm -rf \"$2\"",
    "fi"
  ].join("\n")
  const opts: SpawnOptions = { detached: true, stdio: "ignore" }
  const child = spawn("/bin/sh", ["-c", script, "lo-migrate-pg-watchdog", String(process.pid), dir,
    String(postmasterPid)], opts)
  child.unref()
  return child.pid
}

const run = (cmd: string, args: ReadonlyArray<string>, opts: { readonly cwd: string }): string => {
  try {
    return execFileSync(cmd, args, { cwd: opts.cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`)
  }
}

const tail = (path: string): string => {
  try {
    return readFileSync(path, "utf8").split("\n").slice(-30).join("\n")
  } catch {
    return "(no log)"
  }
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const srv = createServer()
    srv.unref()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      const port = typeof addr === "object" && addr !== null ? addr.port : 0
      srv.close(() => port > 0 ? resolve(port) : reject(new Error("could not get a free port")))
    })
  })

const osUser = (name: string): { readonly uid: number; readonly gid: number } => {
  try {
    return {
      uid: Number(execFileSync("id", ["-u", name], { encoding: "utf8" }).trim()),
      gid: Number(execFileSync("id", ["-g", name], { encoding: "utf8" }).trim())
    }
  } catch {
    throw new Error(
      `Running as root, but there is no '${name}' OS user to run PostgreSQL as (it refuses to run as root). ` +
        `Create it (e.g. 'useradd --system ${name}').`
    )
  }
}

export const missingBinaries =
  "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin. " +
  "Install them (e.g. apt-get install postgresql)."

/**
 * The directory holding initdb, pg_ctl and postgres: `explicit` if given (an error if it lacks them),
 * else initdb on PATH (resolved through symlinks, so pg_ctl finds its `postgres` next to it), else the
 * newest /usr/lib/postgresql/<version>/bin (Debian/Ubuntu do not put initdb on PATH); undefined if none.
 */
export const findPgBinDir = (explicit?: string): string | undefined => {
  const hasTools = (d: string) => existsSync(join(d, "initdb")) && existsSync(join(d, "pg_ctl"))
  if (explicit !== undefined && explicit !== "") {
    if (!hasTools(explicit)) throw new Error(`${explicit} has no initdb/pg_ctl`)
    return explicit
  }
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    if (d === "" || !existsSync(join(d, "initdb"))) continue
    const real = dirname(realpathSync(join(d, "initdb")))
    if (hasTools(real)) return real
  }
  const root = "/usr/lib/postgresql"
  const versions = existsSync(root)
    ? readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number(b) - Number(a))
    : []
  for (const v of versions) {
    if (hasTools(join(root, v, "bin"))) return join(root, v, "bin")
  }
  return undefined
}

const findPsql = (bin: string): string => existsSync(join(bin, "psql")) ? join(bin, "psql") : "psql"
