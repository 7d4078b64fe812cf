// Security: TLS to PostgreSQL verified against a CA file (--pg-ca), against the throwaway cluster that
// offers TLS with a self-signed certificate; and the tool working as an ordinary role that holds only
// the documented grants.
import { PgClient } from "@effect/sql-pg"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { execFileSync } from "node:child_process"
import { randomBytes as cryptoRandomBytes } from "node:crypto"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as PgTls from "../src/postgres/PgTls.ts"
import { runCli } from "./support/Cli.ts"
import * as FaultProxy from "./support/FaultProxy.ts"
import { addSha2Column, createNice2Schema, insertObject, type InsertedObject, randomBytes } from "./support/Nice2Fixture.ts"
import { createBlobChunk, insertBlob, readState } from "./support/RelStorageFixture.ts"
import { asSuperuser, pgTestServer, pgUrl, TestDatabase } from "./support/Postgres.ts"
import { TestS3 } from "./support/S3.ts"
import { assertAllMigrated, freshTempDir } from "./support/Verify.ts"

const env = Layer.mergeAll(TestDatabase.layerClient, TestS3.layer)
const server = pgTestServer()

const s3Flags = Effect.gen(function*() {
  const s3 = yield* TestS3
  return ["--s3-url", s3.endpoint, "--access-key", s3.accessKey, "--secret-key", s3.secretKey, "--bucket", s3.bucket]
})

describe.skipIf(server.caFile === undefined)("TLS to PostgreSQL", () => {
  it.live("--pg-ca verifies the server's certificate; without it, or with another CA, the run is refused", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      yield* createNice2Schema()
      const o = yield* insertObject({ bytes: randomBytes(100, 1) })
      const verifyFull = `${db.url}${db.url.includes("?") ? "&" : "?"}sslmode=verify-full`

      // the driver with PgTls.options really talks TLS
      const [session] = yield* Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        return yield* sql<{ ssl: boolean }>`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`
      }).pipe(Effect.provide(PgClient.layer({ url: Redacted.make(db.url), maxConnections: 1, ...PgTls.options(server.caFile) })))
      assert.isTrue(session!.ssl, "the session is encrypted")

      // sslmode=verify-full without the CA: the self-signed certificate is not trusted
      const untrusted = yield* runCli(["migrate", "--pg-url", verifyFull, ...(yield* s3Flags)])
      assert.strictEqual(untrusted.code, 2, untrusted.stderr)
      assert.match(untrusted.stderr, /PostgreSQL \(--pg-url\): .*(certificate|self.signed)/i)
      assert.include(untrusted.stderr, "help: give the CA that signs the server's certificate with --pg-ca FILE")

      // another CA: refused as well
      const tmp = yield* freshTempDir
      const otherCa = NodePath.join(tmp, "other.crt")
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", NodePath.join(tmp, "other.key"), "-out", otherCa,
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
      ], { stdio: "ignore" })
      const wrongCa = yield* runCli(["migrate", "--pg-url", db.url, "--pg-ca", otherCa, ...(yield* s3Flags)])
      assert.strictEqual(wrongCa.code, 2, wrongCa.stderr)

      // the right CA: migrated
      const ok = yield* runCli(["migrate", "--pg-url", db.url, "--pg-ca", server.caFile!, ...(yield* s3Flags)])
      assert.strictEqual(ok.code, 0, ok.stderr)
      yield* assertAllMigrated([o])
    }).pipe(Effect.scoped, Effect.provide(env)))
})

// https S3 with a private CA: the fault proxy (no faults) serves TLS in front of s3rver with a
// self-signed certificate, which Node trusts through NODE_EXTRA_CA_CERTS, and only then
describe("TLS to S3", () => {
  it.live("an https endpoint works with its CA in NODE_EXTRA_CA_CERTS, and is refused (exit 2) without", () =>
    Effect.gen(function*() {
      const tmp = yield* freshTempDir
      const cert = NodePath.join(tmp, "s3.crt")
      const key = NodePath.join(tmp, "s3.key")
      execFileSync("openssl", [
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"
      ], { stdio: "ignore" })
      const s3 = yield* TestS3
      const proxy = yield* FaultProxy.make({
        upstream: s3.endpoint,
        tls: { cert: NodeFs.readFileSync(cert, "utf8"), key: NodeFs.readFileSync(key, "utf8") }
      })
      assert.match(proxy.endpoint, /^https:/)
      const db = yield* TestDatabase
      yield* createNice2Schema()
      const o = yield* insertObject({ bytes: randomBytes(3000, 7) })
      const args = ["migrate", "--pg-url", db.url, "--s3-url", proxy.endpoint, "--access-key", s3.accessKey,
        "--secret-key", s3.secretKey, "--bucket", s3.bucket]

      const untrusted = yield* runCli(args)
      assert.strictEqual(untrusted.code, 2, untrusted.stderr)
      assert.match(untrusted.stderr, /S3 bucket .*(certificate|self.signed)/i)

      const trusted = yield* runCli(args, { env: { NODE_EXTRA_CA_CERTS: cert } })
      assert.strictEqual(trusted.code, 0, trusted.stderr)
      yield* assertAllMigrated([o])
      assert.isTrue((yield* proxy.log).some((request) => request.method === "PUT"), "the PUT went through https")
    }).pipe(Effect.scoped, Effect.provide(env)))
})

describe.skipIf(server.external)("least privilege", () => {
  it.live("an ordinary role without the grants is refused with the GRANTs to run; with only the documented grants it migrates", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const role = `lomigrate_min_${cryptoRandomBytes(4).toString("hex")}`
      const password = cryptoRandomBytes(12).toString("hex")
      const asAdmin = asSuperuser
      yield* Effect.acquireRelease(
        asAdmin("postgres", [`CREATE ROLE ${role} LOGIN PASSWORD '${password}' NOSUPERUSER NOCREATEDB NOCREATEROLE`]),
        () => asAdmin(db.name, [`DROP OWNED BY ${role}`, `DROP ROLE ${role}`]).pipe(Effect.orDie)
      )

      // the owner prepares the table (the sha2 column needs the owner) and grants the minimum
      yield* createNice2Schema()
      yield* addSha2Column
      const objects: Array<InsertedObject> = []
      for (let i = 0; i < 5; i++) objects.push(yield* insertObject({ bytes: randomBytes(500 + i, 60 + i) }))
      const url = pgUrl(server, db.name, role, password)

      // without the grants: refused before any work (exit 2), naming the GRANTs to run with the role filled in
      const refused = yield* runCli(["migrate", "--pg-url", url, ...(yield* s3Flags)])
      assert.strictEqual(refused.code, 2, refused.stderr)
      assert.include(refused.stderr, `PostgreSQL: role ${role} lacks SELECT, UPDATE on _nice_binary; SELECT on nice_batch_job`)
      assert.include(refused.stderr, `\n  help: as the owner of the tables (or a superuser), run: GRANT SELECT, UPDATE ON _nice_binary TO ${role}; ` +
        `GRANT SELECT ON nice_batch_job TO ${role};`)
      const plan = yield* runCli(["plan", "--pg-url", url, ...(yield* s3Flags)])
      assert.strictEqual(plan.code, 2, plan.stderr)
      assert.include(plan.stderr, `help: as the owner of the table (or a superuser), run: GRANT SELECT ON _nice_binary TO ${role};`)

      yield* sql.unsafe(`GRANT SELECT, UPDATE ON _nice_binary TO ${role}`)
      yield* sql.unsafe(`GRANT SELECT ON nice_batch_job TO ${role}`)
      for (const o of objects) yield* sql.unsafe(`GRANT SELECT ON LARGE OBJECT ${o.oid} TO ${role}`)

      const result = yield* runCli(["migrate", "--pg-url", url, ...(yield* s3Flags)])
      assert.strictEqual(result.code, 0, result.stderr)
      yield* assertAllMigrated(objects)

      // and without the grant on one large object, that row fails (named), the others are unaffected
      const extra = yield* insertObject({ bytes: randomBytes(700, 99) })
      const denied = yield* runCli(["migrate", "--pg-url", url, ...(yield* s3Flags)])
      assert.strictEqual(denied.code, 1, denied.stderr)
      assert.match(denied.stderr, new RegExp(`FAILED ${extra.hash}.*: permission-denied:`))
    }).pipe(Effect.scoped, Effect.provide(env)))

  it.live("relstorage: a role that may not create blob_state uses the one an administrator made; each missing grant is named first", () =>
    Effect.gen(function*() {
      const db = yield* TestDatabase
      const sql = yield* SqlClient.SqlClient
      const role = `lomigrate_rs_${cryptoRandomBytes(4).toString("hex")}`
      const password = cryptoRandomBytes(12).toString("hex")
      yield* Effect.acquireRelease(
        asSuperuser("postgres", [`CREATE ROLE ${role} LOGIN PASSWORD '${password}' NOSUPERUSER NOCREATEDB NOCREATEROLE`]),
        () => asSuperuser(db.name, [`DROP OWNED BY ${role}`, `DROP ROLE ${role}`]).pipe(Effect.orDie)
      )
      yield* createBlobChunk("history-free")
      const blob = yield* insertBlob(1, 2, [randomBytes(300, 5)])
      // as the README has it for a role without CREATE on the schema
      yield* sql`CREATE TABLE blob_state (zoid bigint NOT NULL, tid bigint NOT NULL, blob_size bigint NOT NULL,
        data bytea, s3_key text, PRIMARY KEY (zoid, tid))`
      const args = ["migrate", "--pg-url", pgUrl(server, db.name, role, password), ...(yield* s3Flags), "--profile", "relstorage", "--blob-threshold", "0"]

      const noChunk = yield* runCli(args)
      assert.strictEqual(noChunk.code, 2, noChunk.stderr)
      assert.include(noChunk.stderr, `help: as the owner of the table (or a superuser), run: GRANT SELECT ON blob_chunk TO ${role};`)
      yield* sql.unsafe(`GRANT SELECT ON blob_chunk TO ${role}`)
      yield* sql.unsafe(`GRANT SELECT ON LARGE OBJECT ${blob.oids[0]} TO ${role}`)
      // not "cannot create blob_state: permission denied for schema public": the table is there
      const noState = yield* runCli(args)
      assert.strictEqual(noState.code, 2, noState.stderr)
      assert.include(noState.stderr, `lacks SELECT, INSERT on blob_state`)
      assert.include(noState.stderr, `GRANT SELECT, INSERT ON blob_state TO ${role};`)
      yield* sql.unsafe(`GRANT SELECT, INSERT ON blob_state TO ${role}`)
      const done = yield* runCli(args)
      assert.strictEqual(done.code, 0, done.stderr)
      assert.deepStrictEqual((yield* readState).map((r) => [r.zoid, r.tid]), [["1", "2"]])
    }).pipe(Effect.scoped, Effect.provide(env)))
})
