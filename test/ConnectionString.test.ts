// libpq's connection conventions for every PostgreSQL setting (docs/connections.md): URLs in libpq's
// forms, keyword/value DSNs, the PG* variables as defaults, the password file, sslmode, application_name.
// First the parsing and resolution alone, then each form against the real server, in process (TCP and
// the Unix-domain socket, password and trust, TLS), then the real executable with each form.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as ConnInfo from "../src/domain/ConnInfo.ts"
import { describeCause } from "../src/domain/Errors.ts"
import { validatePgUrl } from "../src/domain/Settings.ts"
import { SOCKET_PASSWORD_ROLE } from "../src/embedded/TempCluster.ts"
import * as ConnectionString from "../src/postgres/ConnectionString.ts"
import * as PgSession from "../src/postgres/PgSession.ts"
import * as PgTls from "../src/postgres/PgTls.ts"
import { runCli } from "./support/Cli.ts"
import { createNice2Schema, insertObject, randomBytes } from "./support/Nice2Fixture.ts"
import { asSuperuser, pgTestServer, TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import * as TcpProxy from "./support/TcpProxy.ts"
import { assertAllMigrated, freshTempDir } from "./support/Verify.ts"
import { filestorageSection, fixtures, zodbConvert } from "./support/Zodb.ts"

const server = pgTestServer()
const parse = (s: string) => Object.fromEntries(ConnInfo.parse(s))
const problemOf = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    return (e as Error).message
  }
  return "(no error)"
}

describe("libpq connection strings: parsing", () => {
  it("URLs in every form libpq accepts", () => {
    // libpq's documentation examples (34.1.1.2), and the forms users hit
    assert.deepStrictEqual(parse("postgresql://"), {})
    assert.deepStrictEqual(parse("postgresql://localhost:5433"), { host: "localhost", port: "5433" })
    assert.deepStrictEqual(parse("postgres://user:secret@localhost/mydb"), {
      user: "user", password: "secret", host: "localhost", dbname: "mydb"
    })
    assert.deepStrictEqual(parse("postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp"), {
      user: "other", host: "localhost", dbname: "otherdb", connect_timeout: "10", application_name: "myapp"
    })
    assert.deepStrictEqual(parse("postgresql://host1:123,host2:456/somedb?target_session_attrs=any"), {
      host: "host1,host2", port: "123,456", dbname: "somedb", target_session_attrs: "any"
    })
    assert.deepStrictEqual(parse("postgresql:///mydb?host=localhost&port=5433"), { dbname: "mydb", host: "localhost", port: "5433" })
    assert.deepStrictEqual(parse("postgresql://[2001:db8::1234]:5433/database"), { host: "2001:db8::1234", port: "5433", dbname: "database" })
    // socket directories: a host= parameter, or a percent-encoded host
    assert.deepStrictEqual(parse("postgresql:///dbname?host=/var/lib/postgresql"), { dbname: "dbname", host: "/var/lib/postgresql" })
    assert.deepStrictEqual(parse("postgresql://%2Fvar%2Flib%2Fpostgresql/dbname"), { host: "/var/lib/postgresql", dbname: "dbname" })
    // credentials with an empty host (was "is not a valid URL")
    assert.deepStrictEqual(parse("postgresql://app:secret@/app?host=/var/run/postgresql"), {
      user: "app", password: "secret", dbname: "app", host: "/var/run/postgresql"
    })
    // percent-decoding everywhere, "+" stays a plus, ssl=true is sslmode=require (libpq's JDBC rule)
    assert.deepStrictEqual(parse("postgres://a%40b:p%3Aw+x@h/d%20b?ssl=true&options=-c%20x%3Dy"), {
      user: "a@b", password: "p:w+x", host: "h", dbname: "d b", sslmode: "require", options: "-c x=y"
    })
    // an empty path leaves PGDATABASE its say
    assert.deepStrictEqual(parse("postgresql://h/"), { host: "h" })
  })

  it("keyword/value DSNs with libpq's quoting rules", () => {
    assert.deepStrictEqual(parse("host=127.0.0.1 port=5432 user=app dbname=app"), {
      host: "127.0.0.1", port: "5432", user: "app", dbname: "app"
    })
    assert.deepStrictEqual(parse("  host = h\tdbname='my db'   password='it\\'s \\\\ ok' user=a\\ b sslmode=''"), {
      host: "h", dbname: "my db", password: "it's \\ ok", user: "a b", sslmode: ""
    })
    assert.deepStrictEqual(parse("dbname='x'user=y"), { dbname: "x", user: "y" })
    assert.deepStrictEqual(parse(""), {})
  })

  it("bad strings are refused by what is wrong, never echoing a password", () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ["user=app hunter2", /a word without "=" at character 10/],
      ["dbname='hunter2", /quoted value of "dbname" .* no closing quote/],
      ["foo=hunter2", /unknown connection option "foo"/],
      ["postgresql://u:hunter2@[bad", /"\[" without its "\]"/],
      ["postgresql://u:hunter2@h:99999/db", /invalid port: a number from 1 to 65535/],
      ["postgresql://u:hunter2@h:x/db", /invalid port: a number from 1 to 65535/],
      ["postgresql://u:hun/ter2@h/db", /an "@" after a "\/": percent-encode/],
      ["postgresql://u:hunter2:x/y@h/db", /an "@" after a "\/": percent-encode/],
      ["postgresql://u:hunter2@h/db?x", /query parameter "x" has no "="/],
      ["postgresql://u:hunter2@h/db?sslmode=sometimes", /sslmode=sometimes: sslmode is one of disable, allow, prefer/],
      ["postgresql://u:hunter%ZZ@h/db", /invalid percent-encoding in the URL's password/],
      ["mysql://u:hunter2@h/db", /must start with postgres:\/\/ or postgresql:\/\//],
      ["host=a,b port=1,2,3 password=hunter2", /3 ports for 2 hosts/],
      ["service=prod password=hunter2", /service: connection service files .* not supported/],
      ["sslcert=/c password=hunter2", /client certificates are not supported/],
      ["target_session_attrs=read-write password=hunter2", /only "any"/]
    ]
    for (const [text, expected] of cases) {
      const problem = problemOf(() => ConnInfo.validate(text, {}))
      assert.match(problem, expected, text)
      assert.notInclude(problem, "hunter", text)
    }
    // a bad variable is named as such
    assert.match(problemOf(() => ConnInfo.validate("", { PGSSLMODE: "on" })), /sslmode=on \(from PGSSLMODE\)/)
    assert.match(problemOf(() => ConnInfo.validate("", { PGSERVICE: "prod" })), /service \(from PGSERVICE\)/)
  })

  it("the PG* variables fill what the string leaves out; the string wins; libpq's defaults last", () => {
    const env = {
      HOME: "/nonexistent", PGHOST: "envhost", PGPORT: "6543", PGUSER: "envuser", PGPASSWORD: "envpw",
      PGDATABASE: "envdb", PGSSLMODE: "require", PGSSLROOTCERT: "/nonexistent/root.crt", PGAPPNAME: "envapp",
      PGCONNECT_TIMEOUT: "7"
    }
    const all = ConnectionString.resolve("", { env })
    assert.deepStrictEqual(all.targets, [{ host: "envhost", port: 6543, socketDir: undefined, address: "envhost" }])
    assert.strictEqual(all.user, "envuser")
    assert.strictEqual(all.dbname, "envdb")
    assert.strictEqual(all.password, "envpw")
    assert.strictEqual(all.passwordFrom, "PGPASSWORD")
    assert.strictEqual(all.sslmode, "require")
    assert.strictEqual(all.sslrootcert, "/nonexistent/root.crt")
    assert.strictEqual(all.applicationName, "envapp")
    assert.strictEqual(all.connectTimeout, 7)

    const url = ConnectionString.resolve("postgresql://app:pw@db.example:5433/appdb?sslmode=disable&application_name=mine", { env })
    assert.deepStrictEqual(url.targets.map((t) => [t.host, t.port]), [["db.example", 5433]])
    assert.deepStrictEqual([url.user, url.password, url.passwordFrom, url.dbname, url.sslmode, url.applicationName],
      ["app", "pw", "the connection string", "appdb", "disable", "mine"])
    // an empty host in the URL: PGHOST; a URL without a password: PGPASSWORD
    const partial = ConnectionString.resolve("postgresql://app@/appdb", { env })
    assert.deepStrictEqual([partial.targets[0]!.host, partial.targets[0]!.port, partial.password], ["envhost", 6543, "envpw"])

    // nothing at all: libpq's defaults, and the tool's application_name
    const bare = ConnectionString.resolve("", { env: { HOME: "/nonexistent" }, socketDirs: [], applicationName: "zodb-convert" })
    assert.deepStrictEqual(bare.targets, [{ host: "localhost", port: 5432, socketDir: undefined, address: "localhost" }])
    assert.strictEqual(bare.dbname, bare.user, "the database is named like the user")
    assert.strictEqual(bare.sslmode, "prefer")
    assert.strictEqual(bare.applicationName, "zodb-convert")
    assert.strictEqual(bare.password, undefined)
    // --pg-ca: verify-full unless the string names an sslmode (PGSSLMODE does not count against the flag)
    assert.strictEqual(ConnectionString.resolve("host=h", { env, pgCa: "/ca.pem" }).sslmode, "verify-full")
    assert.strictEqual(ConnectionString.resolve("host=h sslmode=require", { env, pgCa: "/ca.pem" }).sslmode, "require")
    // a socket directory as host; several hosts with their ports
    const sockets = ConnectionString.resolve("host=/run/pg,db2,::1 port=5432,5433,5434", { env: {} })
    assert.deepStrictEqual(sockets.targets.map((t) => [t.socketDir, t.address, t.port]), [
      ["/run/pg", "/run/pg", 5432], [undefined, "db2", 5433], [undefined, "::1", 5434]
    ])
    assert.strictEqual(ConnectionString.describe(url), "app@db.example:5433/appdb")
  })

  it("the password file: wildcards, \\: and \\\\ escapes, the first match wins, comments", () => {
    const text = [
      "# comment: *:*:*:*:never",
      "db.example:5432:app:alice:first",
      "db.example:5432:app:alice:second",
      "*:5433:*:bob:pa\\:ss\\\\word:ignored after a colon",
      "h\\:1:*:*:*:escaped-host",
      "localhost:*:*:*:local",
      "*:*:*:*:fallback"
    ].join("\n")
    const find = (host: string, port: string, dbname: string, user: string) =>
      ConnectionString.passwordFromLines(text, { host, port, dbname, user })
    assert.strictEqual(find("db.example", "5432", "app", "alice"), "first")
    assert.strictEqual(find("any.host", "5433", "x", "bob"), "pa:ss\\word")
    assert.strictEqual(find("h:1", "1", "d", "u"), "escaped-host")
    assert.strictEqual(find("localhost", "5432", "d", "u"), "local")
    assert.strictEqual(find("db.example", "5432", "app", "carol"), "fallback")
    assert.strictEqual(ConnectionString.passwordFromLines("*x:*:*:*:literal-star", { host: "x", port: "1", dbname: "d", user: "u" }), undefined)
  })

  it.live("the password file by PGPASSFILE, passfile= and ~/.pgpass; group/world readable is ignored with libpq's warning", () =>
    Effect.gen(function*() {
      const dir = yield* freshTempDir
      const file = NodePath.join(dir, "pgpass")
      NodeFs.writeFileSync(file, "h:5432:d:u:from-file\nlocalhost:5432:*:u:via-localhost\n", { mode: 0o600 })
      NodeFs.chmodSync(file, 0o600)
      const env = { HOME: dir, PGPASSFILE: file }
      const found = ConnectionString.resolve("host=h dbname=d user=u", { env })
      assert.strictEqual(found.password, "from-file")
      assert.strictEqual(found.passwordFrom, `password file ${file}`)
      assert.deepStrictEqual(found.warnings, [])
      // a password in the string or PGPASSWORD wins over the file
      assert.strictEqual(ConnectionString.resolve("host=h dbname=d user=u password=given", { env }).password, "given")
      assert.strictEqual(ConnectionString.resolve("host=h dbname=d user=u", { env: { ...env, PGPASSWORD: "envpw" } }).password, "envpw")
      // passfile= beats PGPASSFILE; ~/.pgpass is the default
      NodeFs.writeFileSync(NodePath.join(dir, ".pgpass"), "*:*:*:*:from-home\n", { mode: 0o600 })
      assert.strictEqual(ConnectionString.resolve("host=h dbname=d user=u", { env: { HOME: dir } }).password, "from-home")
      assert.strictEqual(ConnectionString.resolve(`host=h dbname=d user=u passfile=${file}`, { env: { HOME: dir } }).password, "from-file")
      // "localhost" stands for no host and for the default socket directory, not for any other socket directory
      const socketDir = NodePath.join(dir, "sock")
      NodeFs.mkdirSync(socketDir)
      NodeFs.writeFileSync(NodePath.join(socketDir, ".s.PGSQL.5432"), "")
      assert.strictEqual(ConnectionString.resolve("dbname=d user=u", { env, socketDirs: [socketDir] }).password, "via-localhost")
      assert.strictEqual(ConnectionString.resolve("dbname=d user=u", { env, socketDirs: [] }).password, "via-localhost")
      assert.strictEqual(ConnectionString.resolve(`host=${socketDir} dbname=d user=u`, { env, socketDirs: [] }).password, undefined)
      // 0644: ignored, with the warning libpq prints
      NodeFs.chmodSync(file, 0o644)
      const open = ConnectionString.resolve("host=h dbname=d user=u", { env })
      assert.strictEqual(open.password, undefined)
      assert.lengthOf(open.warnings, 1)
      assert.match(open.warnings[0]!, /password file ".*pgpass" has group or world access \(mode 0644\): ignored; permissions should be u=rw \(0600\) or less/)
    }).pipe(Effect.scoped))

  it("sslmode: libpq's meanings on Node's TLS options", () => {
    const plan = (sslmode: string, extra = "") =>
      PgTls.plan(ConnectionString.resolve(`host=h sslmode=${sslmode} ${extra}`, { env: { HOME: "/nonexistent" } }))
    assert.isUndefined(plan("disable"))
    for (const mode of ["allow", "prefer"]) {
      assert.deepInclude(plan(mode), { required: false }, mode)
      assert.strictEqual(plan(mode)!.options.rejectUnauthorized, false, mode)
    }
    assert.strictEqual(plan("require")!.required, true)
    assert.strictEqual(plan("require")!.options.rejectUnauthorized, false)
    assert.strictEqual(plan("verify-ca")!.options.rejectUnauthorized, true)
    assert.isDefined(plan("verify-ca")!.options.checkServerIdentity, "verify-ca skips the host name")
    assert.strictEqual(plan("verify-full")!.options.rejectUnauthorized, true)
    assert.isUndefined(plan("verify-full")!.options.checkServerIdentity, "verify-full checks the host name")
    assert.strictEqual(plan("verify-full")!.options.minVersion, "TLSv1.2", "libpq's ssl_min_protocol_version")
    if (server.caFile !== undefined) {
      // a root certificate makes require check the chain (libpq: require = verify-ca then)
      const checked = plan("require", `sslrootcert=${server.caFile}`)!
      assert.strictEqual(checked.options.rejectUnauthorized, true)
      assert.isDefined(checked.options.ca)
    }
    assert.match(problemOf(() => plan("verify-ca", "sslrootcert=/nonexistent/root.crt")), /cannot read the root certificate/)
  })

  it.effect("--pg-url: errors name the flag; left out, the PG* variables must say where to connect", () =>
    Effect.gen(function*() {
      const missing = yield* Effect.flip(validatePgUrl(undefined, {}))
      assert.strictEqual(missing.setting, "--pg-url")
      assert.match(missing.message, /is required: .*LO_MIGRATE_PG_URL.*PGHOST, PGHOSTADDR, PGDATABASE/)
      const fromEnv = yield* validatePgUrl(undefined, { PGHOST: "/tmp" })
      assert.strictEqual(Redacted.value(fromEnv), "")
      const bad = yield* Effect.flip(validatePgUrl("host=h password=hunter2 oops", {}))
      assert.strictEqual(bad.setting, "--pg-url")
      assert.notInclude(bad.message, "hunter2")
      const kv = yield* validatePgUrl("host=127.0.0.1 port=5432 user=app dbname=app", {})
      assert.strictEqual(Redacted.value(kv), "host=127.0.0.1 port=5432 user=app dbname=app")
    }))
})

// ---------------------------------------------------------------------------------------------------
// against the real server

interface Probe {
  readonly user: string
  readonly db: string
  readonly socket: boolean
  readonly app: string
  readonly ssl: boolean
}

const probeSql = `SELECT current_user AS "user", current_database() AS db, inet_server_addr() IS NULL AS socket,
  a.application_name AS app, coalesce(s.ssl, false) AS ssl
  FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s ON s.pid = a.pid WHERE a.pid = pg_backend_pid()`

/** One session as the tool opens them (PgSession.layer), and what the server says about it. */
const probe = (dsn: string, env: ConnInfo.Env, options: Partial<PgSession.SessionOptions> = {}) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql.unsafe<Probe>(probeSql)
    return rows[0]!
  }).pipe(Effect.provide(PgSession.layer(Redacted.make(dsn), { maxConnections: 1, env, timeoutSeconds: 30, ...options })))

/** The failure of `probe`, as the tool words it. */
const refusal = (dsn: string, env: ConnInfo.Env, options: Partial<PgSession.SessionOptions> = {}) =>
  Effect.map(Effect.flip(probe(dsn, env, options)), (error) => describeCause(error))

const kvQuote = (s: string) => `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`
const socketDir = server.socketDir
const hasTls = server.caFile !== undefined

describe("libpq connection strings against the real server", () => {
  it.live("TCP with a password: URL, keyword DSN, PGPASSWORD, password file (0600 used, 0644 ignored), environment alone", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const home = yield* freshTempDir
      const env = { HOME: home, PGSSLMODE: "disable" }
      const expect = { user: db.role, db: db.name, socket: false, app: "lo-migrate", ssl: false }

      assert.deepStrictEqual(yield* probe(db.url, env), expect)
      assert.deepStrictEqual(
        yield* probe(`host=${db.host} port=${db.port} user=${db.role} password=${kvQuote(db.password)} dbname=${db.name}`, env),
        expect
      )
      // postgresql://app@host/db with PGPASSWORD (was: authentication failed)
      const noPassword = `postgresql://${db.role}@${db.host}:${db.port}/${db.name}`
      assert.deepStrictEqual(yield* probe(noPassword, { ...env, PGPASSWORD: db.password }), expect)
      // ... and with the password file
      const passfile = NodePath.join(home, "pgpass")
      NodeFs.writeFileSync(passfile, `${db.host}:${db.port}:*:${db.role}:${db.password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}\n`, { mode: 0o600 })
      NodeFs.chmodSync(passfile, 0o600)
      assert.deepStrictEqual(yield* probe(noPassword, { ...env, PGPASSFILE: passfile }), expect)
      // ~/.pgpass by default
      NodeFs.copyFileSync(passfile, NodePath.join(home, ".pgpass"))
      NodeFs.chmodSync(NodePath.join(home, ".pgpass"), 0o600)
      assert.deepStrictEqual(yield* probe(noPassword, env), expect)
      NodeFs.rmSync(NodePath.join(home, ".pgpass"))
      // the environment alone
      assert.deepStrictEqual(yield* probe("", {
        ...env, PGHOST: db.host, PGPORT: String(db.port), PGUSER: db.role, PGDATABASE: db.name, PGPASSFILE: passfile
      }), expect)
      // a wrong password: refused, and the message never shows a password
      const wrong = yield* refusal(`postgresql://${db.role}:not-${encodeURIComponent(db.password)}@${db.host}:${db.port}/${db.name}`, env)
      assert.match(wrong, /password authentication failed/)
      assert.notInclude(wrong, db.password)
      // 0644: ignored (the server then asks for a password the tool does not have)
      NodeFs.chmodSync(passfile, 0o644)
      const ignored = yield* refusal(noPassword, { ...env, PGPASSFILE: passfile })
      assert.match(ignored, /password/i)
      assert.notInclude(ignored, db.password)
    }).pipe(Effect.scoped, Effect.provide(TestDatabase.layer)))

  it.live("application_name: lo-migrate, zodb-convert, or what the string or PGAPPNAME says, as pg_stat_activity shows it", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const env = { HOME: "/nonexistent", PGSSLMODE: "disable" }
      assert.strictEqual((yield* probe(db.url, env)).app, "lo-migrate")
      assert.strictEqual((yield* probe(db.url, env, { applicationName: "zodb-convert" })).app, "zodb-convert")
      assert.strictEqual((yield* probe(db.url, { ...env, PGAPPNAME: "nightly-migration" })).app, "nightly-migration")
      assert.strictEqual((yield* probe(`${db.url}?application_name=from-url`, { ...env, PGAPPNAME: "env" })).app, "from-url")
    }).pipe(Effect.provide(TestDatabase.layer)))

  // the throwaway cluster's TLS (an external server's is unknown)
  it.live.skipIf(server.external)("sslmode against a server that offers TLS with a self-signed certificate", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const env = { HOME: "/nonexistent" }
      const at = (host: string, query: string) =>
        `postgresql://${db.role}:${encodeURIComponent(db.password)}@${host}:${db.port}/${db.name}?${query}`
      assert.isFalse((yield* probe(at("127.0.0.1", "sslmode=disable"), env)).ssl)
      // libpq's default, prefer: TLS when offered, the certificate not checked without a root certificate
      assert.strictEqual((yield* probe(at("127.0.0.1", ""), env)).ssl, hasTls)
      assert.strictEqual((yield* probe(at("127.0.0.1", "sslmode=allow"), env)).ssl, hasTls)
      if (!hasTls) {
        assert.match(yield* refusal(at("127.0.0.1", "sslmode=require"), env), /does not offer TLS, and sslmode=require requires it/)
        return
      }
      assert.isTrue((yield* probe(at("127.0.0.1", "sslmode=require"), env)).ssl)
      // PGSSLMODE is the default when the string names none
      assert.isTrue((yield* probe(at("127.0.0.1", ""), { ...env, PGSSLMODE: "require" })).ssl)
      // verify-*: the self-signed certificate is not among Node's trusted CAs
      assert.match(yield* refusal(at("127.0.0.1", "sslmode=verify-ca"), env), /self.signed|certificate/i)
      const ca = `sslrootcert=${encodeURIComponent(server.caFile!)}`
      assert.isTrue((yield* probe(at("127.0.0.1", `sslmode=verify-ca&${ca}`), env)).ssl)
      assert.isTrue((yield* probe(at("127.0.0.1", `sslmode=verify-full&${ca}`), env)).ssl)
      // the certificate names 127.0.0.1 only: verify-ca accepts "localhost", verify-full does not
      assert.isTrue((yield* probe(at("localhost", `sslmode=verify-ca&${ca}`), env)).ssl)
      assert.match(yield* refusal(at("localhost", `sslmode=verify-full&${ca}`), env), /localhost|altnames|Hostname/i)
      // PGSSLROOTCERT and --pg-ca as the root certificate; --pg-ca alone means verify-full
      assert.isTrue((yield* probe(at("127.0.0.1", "sslmode=verify-full"), { ...env, PGSSLROOTCERT: server.caFile! })).ssl)
      assert.isTrue((yield* probe(at("127.0.0.1", ""), { ...env, PGSSLMODE: "disable" }, { pgCa: server.caFile! })).ssl)
      assert.match(yield* refusal(at("localhost", ""), env, { pgCa: server.caFile! }), /localhost|altnames|Hostname/i)
    }).pipe(Effect.provide(TestDatabase.layer)))

  it.live.skipIf(!hasTls)("the watch on TLS sessions: busy for longer than its silence, kept; frozen half way through an answer, dropped", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const env = { HOME: "/nonexistent" }
      const url = `${db.url}?sslmode=require`
      // --pg-timeout 1: a session that owes an answer and sees no byte for 1 + 5 s is dropped
      const busy = Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const [tls] = yield* sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`
        assert.isTrue(tls!.ssl)
        const until = Date.now() + 7_500
        let statements = 0
        while (Date.now() < until) {
          yield* sql`SELECT pg_sleep(0.05)`
          statements++
        }
        return statements
      }).pipe(Effect.provide(PgSession.layer(Redacted.make(url), { maxConnections: 1, env, timeoutSeconds: 1 })))
      assert.isAbove(yield* busy, 50)

      // rows flowing over TLS, then the path freezes: the plaintext framing knows the answer is not
      // complete (when the driver ran TLS, the watch saw only ciphertext: the first byte of an answer
      // ended its wait, and this hung until a second signal)
      const proxy = yield* TcpProxy.make({ host: db.host, port: db.port })
      const started = Date.now()
      const frozen = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        yield* sql`SELECT 1`
        const fiber = yield* Effect.forkChild(
          sql`SELECT g, repeat('x', 4000) AS pad FROM generate_series(1, 3000) g WHERE pg_sleep(0.01) IS NOT NULL`
        )
        yield* Effect.sleep("700 millis")
        yield* proxy.freeze()
        return yield* Effect.flip(Fiber.join(fiber))
      }).pipe(Effect.provide(PgSession.layer(Redacted.make(proxy.via(url)), { maxConnections: 1, env, timeoutSeconds: 3 })))
      assert.match(describeCause(frozen), /sent nothing for 8 s/)
      assert.isBelow(Date.now() - started, 20_000)
    }).pipe(Effect.scoped, Effect.provide(TestDatabase.layer)))

  it.live("several hosts: the first that accepts a connection", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const env = { HOME: "/nonexistent", PGSSLMODE: "disable", PGPASSWORD: db.password }
      const probed = yield* probe(`postgresql://${db.role}@127.0.0.1:1,${db.host}:${db.port}/${db.name}`, env)
      assert.strictEqual(probed.db, db.name)
      const kv = yield* probe(`host=127.0.0.1,${db.host} port=1,${db.port} user=${db.role} dbname=${db.name}`, env)
      assert.strictEqual(kv.db, db.name)
      assert.match(yield* refusal(`host=127.0.0.1,127.0.0.1 port=1,2 user=${db.role} dbname=${db.name}`, env), /ECONNREFUSED/)
    }).pipe(Effect.provide(TestDatabase.layer)))

  describe.skipIf(socketDir === undefined)("the Unix-domain socket", () => {
    const withSocketRole = <A, E, R>(password: string, effect: Effect.Effect<A, E, R>) =>
      Effect.acquireUseRelease(
        asSuperuser("postgres", [
          `CREATE ROLE ${SOCKET_PASSWORD_ROLE} LOGIN PASSWORD '${password}'`,
          `GRANT ${server.appRole} TO ${SOCKET_PASSWORD_ROLE}`
        ]),
        () => effect,
        () => asSuperuser("postgres", [`DROP ROLE ${SOCKET_PASSWORD_ROLE}`]).pipe(Effect.orDie)
      )

    it.live("trust, and a role that must give its password: URL forms, keyword DSN, PGPASSWORD, password file, environment alone", () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const dir = socketDir!
        const home = yield* freshTempDir
        // sslmode=require is ignored on a socket, as libpq does
        const env = { HOME: home, PGSSLMODE: "require" }
        const trusted = { user: db.role, db: db.name, socket: true, app: "lo-migrate", ssl: false }
        const encoded = encodeURIComponent(dir)
        // trust: no password
        assert.deepStrictEqual(yield* probe(`postgresql:///${db.name}?host=${encoded}&port=${db.port}&user=${db.role}`, env), trusted)
        assert.deepStrictEqual(yield* probe(`postgresql://${db.role}@${encoded}:${db.port}/${db.name}`, env), trusted)
        assert.deepStrictEqual(yield* probe(`host=${dir} port=${db.port} user=${db.role} dbname=${db.name}`, env), trusted)
        assert.deepStrictEqual(yield* probe("", { ...env, PGHOST: dir, PGPORT: String(db.port), PGUSER: db.role, PGDATABASE: db.name }), trusted)

        const password = "s0cket:pw'\\"
        yield* withSocketRole(password.replace(/'/g, "''"), Effect.gen(function*() {
          const role = SOCKET_PASSWORD_ROLE
          const expect = { ...trusted, user: role }
          // credentials with an empty host (was: "is not a valid URL")
          assert.deepStrictEqual(
            yield* probe(`postgresql://${role}:${encodeURIComponent(password)}@/${db.name}?host=${encoded}&port=${db.port}`, env),
            expect
          )
          assert.deepStrictEqual(yield* probe(`host=${dir} port=${db.port} user=${role} password=${kvQuote(password)} dbname=${db.name}`, env), expect)
          const noPassword = `postgresql://${role}@${encoded}:${db.port}/${db.name}`
          assert.match(yield* refusal(noPassword, env), /password/i)
          assert.deepStrictEqual(yield* probe(noPassword, { ...env, PGPASSWORD: password }), expect)
          // the password file names a socket directory by its path
          const passfile = NodePath.join(home, "pgpass")
          const escaped = password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")
          NodeFs.writeFileSync(passfile, `${dir}:${db.port}:${db.name}:${role}:${escaped}\n`, { mode: 0o600 })
          NodeFs.chmodSync(passfile, 0o600)
          assert.deepStrictEqual(yield* probe(noPassword, { ...env, PGPASSFILE: passfile }), expect)
          assert.deepStrictEqual(yield* probe("", { ...env, PGHOST: dir, PGPORT: String(db.port), PGUSER: role, PGDATABASE: db.name, PGPASSFILE: passfile }), expect)
          const wrong = yield* refusal(`${noPassword}?password=wrong`, env)
          assert.match(wrong, /password authentication failed/)
        }))
      }).pipe(Effect.scoped, Effect.provide(TestDatabase.layer)))

    it.live("psql (libpq itself) reaches the same user, database and kind of connection for each form", () =>
      Effect.gen(function*() {
        const db = yield* TestDatabase
        const dir = socketDir!
        const psql = NodeFs.existsSync("/usr/bin/psql") ? "/usr/bin/psql" : "psql"
        const env = { HOME: "/nonexistent", PGSSLMODE: "disable", PGPASSWORD: db.password }
        const forms = [
          `host=${db.host} port=${db.port} user=${db.role} dbname=${db.name}`,
          `postgresql://${db.role}@${db.host}:${db.port}/${db.name}`,
          `postgresql:///${db.name}?host=${encodeURIComponent(dir)}&port=${db.port}&user=${db.role}`,
          `postgresql://${db.role}@${encodeURIComponent(dir)}:${db.port}/${db.name}`,
          `host=${dir} port=${db.port} user=${db.role} dbname=${db.name}`
        ]
        for (const form of forms) {
          let viaPsql: string
          try {
            viaPsql = execFileSync(psql, ["-X", "-A", "-t", "-d", form, "-c",
              "SELECT current_user || '|' || current_database() || '|' || CASE WHEN inet_server_addr() IS NULL THEN 't' ELSE 'f' END"], {
              env: { PATH: process.env.PATH, ...env }, encoding: "utf8"
            }).trim()
          } catch {
            return // no psql here: nothing to compare with
          }
          const ours = yield* probe(form, env)
          assert.strictEqual(`${ours.user}|${ours.db}|${ours.socket ? "t" : "f"}`, viaPsql, form)
        }
      }).pipe(Effect.provide(TestDatabase.layer)))
  })
})

// ---------------------------------------------------------------------------------------------------
// the real executable

describe("lo-migrate with libpq's connection forms", () => {
  const planned = (result: { readonly code: number | null; readonly stdout: string; readonly stderr: string }, what: string) => {
    assert.strictEqual(result.code, 0, `${what}: ${result.stderr}`)
    assert.match(result.stdout, /to migrate: +1 /, what)
  }

  it.live("plan with a keyword DSN, PGPASSWORD, the password file, the environment alone; LO_MIGRATE_PG_URL and --pg-url win", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(100, 1) })
      const home = yield* freshTempDir
      const base = { HOME: home }
      const kv = `host=${db.host} port=${db.port} user=${db.role} password=${kvQuote(db.password)} dbname=${db.name}`
      // was: "is not a valid URL" (exit 2)
      planned(yield* runCli(["plan", "--pg-url", kv], { env: base }), "keyword DSN")
      // was: authentication failed
      const noPassword = `postgresql://${db.role}@${db.host}:${db.port}/${db.name}`
      planned(yield* runCli(["plan", "--pg-url", noPassword], { env: { ...base, PGPASSWORD: db.password } }), "PGPASSWORD")
      const passfile = NodePath.join(home, "pgpass")
      NodeFs.writeFileSync(passfile, `*:${db.port}:${db.name}:${db.role}:${db.password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}\n`, { mode: 0o600 })
      NodeFs.chmodSync(passfile, 0o600)
      planned(yield* runCli(["plan", "--pg-url", noPassword], { env: { ...base, PGPASSFILE: passfile } }), "password file")
      // was: "Missing required flag: --pg-url"
      const pgEnv = { ...base, PGHOST: db.host, PGPORT: String(db.port), PGUSER: db.role, PGDATABASE: db.name, PGPASSFILE: passfile }
      planned(yield* runCli(["plan"], { env: pgEnv }), "PG* variables alone")
      // precedence: --pg-url > LO_MIGRATE_PG_URL > PG*
      planned(yield* runCli(["plan"], { env: { ...pgEnv, PGDATABASE: "no_such_db", LO_MIGRATE_PG_URL: db.url } }), "LO_MIGRATE_PG_URL over PGDATABASE")
      planned(yield* runCli(["plan", "--pg-url", db.url], { env: { ...pgEnv, LO_MIGRATE_PG_URL: "host=127.0.0.1 port=1" } }), "--pg-url over LO_MIGRATE_PG_URL")

      // group/world readable password file: libpq's warning, then the server's refusal; no password shown
      NodeFs.chmodSync(passfile, 0o644)
      const open = yield* runCli(["plan", "--pg-url", noPassword], { env: { ...base, PGPASSFILE: passfile } })
      assert.strictEqual(open.code, 2, open.stderr)
      assert.match(open.stderr, /password file ".*pgpass" has group or world access \(mode 0644\): ignored/)
      assert.match(open.stderr, new RegExp(`PostgreSQL \\(--pg-url\\): authentication failed at ${db.role}@${db.host}:${db.port}/${db.name}`))
      assert.notInclude(open.stderr + open.stdout, db.password)

      // nothing says where: the flag is named, and the variables that would do
      const none = yield* runCli(["plan"], { env: base })
      assert.strictEqual(none.code, 2, none.stderr)
      assert.match(none.stderr, /invalid setting --pg-url: is required: .*PGHOST/)
      // a bad DSN: named by the flag, the value never echoed
      const bad = yield* runCli(["plan", "--pg-url", `host=${db.host} password=${db.password} oops`], { env: base })
      assert.strictEqual(bad.code, 2, bad.stderr)
      assert.match(bad.stderr, /invalid setting --pg-url: a word without "="/)
      assert.notInclude(bad.stderr + bad.stdout, db.password)
    }).pipe(Effect.scoped, Effect.provide(TestDatabase.layerClient)))

  it.live.skipIf(socketDir === undefined)("plan over the socket: credentials with an empty host, %-encoded socket host, PGHOST=/dir with the password file", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      yield* createNice2Schema()
      yield* insertObject({ bytes: randomBytes(100, 2) })
      const dir = socketDir!
      const home = yield* freshTempDir
      const base = { HOME: home }
      planned(yield* runCli(["plan", "--pg-url", `postgresql://${db.role}@${encodeURIComponent(dir)}:${db.port}/${db.name}`], { env: base }), "trust, %-encoded host")
      const password = "sock-pw-42"
      yield* Effect.acquireUseRelease(
        asSuperuser("postgres", [
          `CREATE ROLE ${SOCKET_PASSWORD_ROLE} LOGIN PASSWORD '${password}'`,
          `GRANT ${server.appRole} TO ${SOCKET_PASSWORD_ROLE}`
        ]),
        () =>
          Effect.gen(function*() {
            const role = SOCKET_PASSWORD_ROLE
            // was: "is not a valid URL"
            planned(yield* runCli(["plan", "--pg-url", `postgresql://${role}:${password}@/${db.name}?host=${dir}&port=${db.port}`], { env: base }),
              "credentials with an empty host")
            const passfile = NodePath.join(home, "pgpass")
            NodeFs.writeFileSync(passfile, `${dir}:*:*:${role}:${password}\n`, { mode: 0o600 })
            NodeFs.chmodSync(passfile, 0o600)
            planned(yield* runCli(["plan"], {
              env: { ...base, PGHOST: dir, PGPORT: String(db.port), PGUSER: role, PGDATABASE: db.name, PGPASSFILE: passfile }
            }), "PGHOST=/dir and the password file")
            const refused = yield* runCli(["plan", "--pg-url", `host=${dir} port=${db.port} user=${role} dbname=${db.name} password=wrong-one`], { env: base })
            assert.strictEqual(refused.code, 2, refused.stderr)
            assert.match(refused.stderr, /authentication failed/)
            assert.notInclude(refused.stderr, "wrong-one")
          }),
        () => asSuperuser("postgres", [`DROP ROLE ${SOCKET_PASSWORD_ROLE}`]).pipe(Effect.orDie)
      )
    }).pipe(Effect.scoped, Effect.provide(TestDatabase.layerClient)))

  it.live.skipIf(socketDir === undefined)("migrate over the socket with a keyword DSN, TLS-free as libpq on sockets", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      const objects = [yield* insertObject({ bytes: randomBytes(2000, 3) }), yield* insertObject({ bytes: randomBytes(10, 4) })]
      const result = yield* runCli([
        "migrate", "--pg-url", `host=${socketDir} port=${db.port} user=${db.role} dbname=${db.name} sslmode=require`,
        "--s3-url", s3.endpoint, "--access-key", s3.accessKey, "--secret-key", s3.secretKey, "--bucket", s3.bucket
      ], { env: { HOME: "/nonexistent" } })
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)
    }).pipe(Effect.provide(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer))))

  /** The application_name of every other session on `database` while `effect` runs, as a DBA sees them. */
  const appNamesDuring = <A, E, R>(database: string, effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const seen = new Set<string>()
      const poll = sql<{ app: string }>`
        SELECT application_name AS app FROM pg_stat_activity WHERE datname = ${database} AND pid <> pg_backend_pid()`.pipe(
        Effect.tap((rows) => Effect.sync(() => rows.forEach((r) => seen.add(r.app)))),
        Effect.andThen(Effect.sleep("20 millis")),
        Effect.forever
      )
      const fiber = yield* Effect.forkChild(poll)
      const result = yield* effect
      yield* Fiber.interrupt(fiber)
      return { result, seen }
    })

  it.live("pg_stat_activity shows lo-migrate's and zodb-convert's sessions by name, or the name PGAPPNAME gives", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const s3 = yield* TestS3
      yield* createNice2Schema()
      for (let i = 0; i < 20; i++) yield* insertObject({ bytes: randomBytes(20_000 + i, 10 + i) })
      const s3Flags = ["--s3-url", s3.endpoint, "--access-key", s3.accessKey, "--secret-key", s3.secretKey, "--bucket", s3.bucket]
      const env = { HOME: "/nonexistent" }
      const migrate = yield* appNamesDuring(db.name, runCli(["migrate", "--pg-url", db.url, ...s3Flags, "--dry-run"], { env }))
      assert.strictEqual(migrate.result.code, 0, migrate.result.stderr)
      assert.isTrue(migrate.seen.has("lo-migrate"), [...migrate.seen].join(", "))
      const named = yield* appNamesDuring(db.name, runCli(["plan", "--pg-url", db.url], { env: { ...env, PGAPPNAME: "nightly-migration" } }))
      assert.strictEqual(named.result.code, 0, named.result.stderr)
      assert.isTrue(named.seen.has("nightly-migration"), [...named.seen].join(", "))
      assert.isFalse(named.seen.has("lo-migrate"))

      // zodb-convert: the destination DSN in its config file, a keyword DSN with the rest from PG*
      const dir = yield* freshTempDir
      const config = NodePath.join(dir, "zodb-convert.conf")
      NodeFs.writeFileSync(config, `%import zodb_pgjsonb\n${filestorageSection(`${fixtures}/filestorage/Data.fs`, `${fixtures}/filestorage/blobs`)}` +
        `<pgjsonb destination>\n  dsn host=${db.host} port=${db.port}\n  history-preserving false\n  blob-threshold 100KB\n` +
        `  s3-bucket-name ${s3.bucket}\n  s3-endpoint-url ${s3.endpoint}\n  s3-region ${s3.region}\n` +
        `  s3-access-key ${s3.accessKey}\n  s3-secret-key ${s3.secretKey}\n  s3-use-ssl false\n</pgjsonb>\n`)
      const zodb = yield* appNamesDuring(db.name, zodbConvert([config, "-w", "1"], {
        env: { ...env, PGUSER: db.role, PGPASSWORD: db.password, PGDATABASE: db.name }
      }))
      assert.strictEqual(zodb.result.code, 0, zodb.result.stderr)
      assert.isTrue(zodb.seen.has("zodb-convert"), [...zodb.seen].join(", "))
    }).pipe(Effect.scoped, Effect.provide(Layer.mergeAll(TestDatabase.layerClient, TestS3.layer))))
})
