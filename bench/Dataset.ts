/**
 * Bench data: a database per data set, holding the Nice2 schema and large objects whose bytes
 * PostgreSQL generates itself (no payload crosses the wire while filling), so filling is quick.
 *
 * The content of an object is a block of SHA-256 digests of `seed:1`, `seed:2`, ... (at most 64 KiB),
 * repeated up to the object's size. That is incompressible for PostgreSQL (pglz looks back 4 KiB) and
 * distinct per object, and the bench computes the same bytes' SHA-1 for the row's `hash` on its side.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Redacted } from "effect"
import { SqlClient } from "effect/sql"
import { createHash } from "node:crypto"
import type { PgTestServer } from "../test/support/context.ts"
import { createNice2Schema } from "../test/support/Nice2Fixture.ts"

const BLOCK = 64 * 1024
/** Objects up to this size are created in one statement; larger ones with lo_put in chunks. */
const SINGLE_MAX = 8 * 1024 * 1024

export interface ObjectSpec {
  readonly seed: string
  readonly size: number
  readonly mime: string
}

/** The repeating block of an object: SHA-256 of `seed:g` for g = 1.., min(size, 64 KiB) rounded up to 32. */
export const block = (seed: string, size: number): Buffer => {
  const n = Math.ceil(Math.min(size, BLOCK) / 32)
  const parts: Array<Buffer> = []
  for (let g = 1; g <= n; g++) parts.push(createHash("sha256").update(`${seed}:${g}`).digest())
  return Buffer.concat(parts)
}

/** SHA-1 of the object's bytes: the Nice2 row key. */
export const sha1Of = (spec: ObjectSpec): string => {
  const b = block(spec.seed, spec.size)
  const h = createHash("sha1")
  let left = spec.size
  while (left > 0) {
    const n = Math.min(left, b.length)
    h.update(n === b.length ? b : b.subarray(0, n))
    left -= n
  }
  return h.digest("hex")
}

export const pgUrl = (server: PgTestServer, database: string, role = server.appRole, password = server.appPassword) =>
  `postgres://${encodeURIComponent(role)}:${encodeURIComponent(password)}@${server.host}:${server.port}/${database}`

/** Runs `effect` with a pool of `max` connections to `url`. */
export const withPg = <A, E>(url: string, effect: Effect.Effect<A, E, SqlClient.SqlClient>, max = 2, extra: Partial<PgClient.PgPoolConfig> = {}) =>
  Effect.runPromise(
    Effect.scoped(effect.pipe(
      Effect.provide(PgClient.layer({ url: Redacted.make(url), maxConnections: max, maxMessageSize: 80 * 1024 * 1024, ...extra }))
    )) as Effect.Effect<A, E | unknown>
  )

/** Creates database `name` owned by the app role, with the Nice2 schema; returns the app role's URL. */
export const createDatabase = async (server: PgTestServer, name: string, options: { readonly nice2?: boolean } = {}): Promise<string> => {
  const admin = server.adminUrl
  await withPg(admin, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
    yield* sql.unsafe(server.external ? `CREATE DATABASE "${name}"` : `CREATE DATABASE "${name}" OWNER "${server.appRole}"`)
  }), 1)
  const url = pgUrl(server, name)
  if (options.nice2 !== false) await withPg(url, createNice2Schema())
  return url
}

/** Inserts the objects (rows and large objects); 500 small ones per statement. */
export const insertObjects = (url: string, specs: ReadonlyArray<ObjectSpec>) =>
  withPg(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const small = specs.filter((s) => s.size <= SINGLE_MAX)
    const batches: Array<ReadonlyArray<ObjectSpec>> = []
    for (let i = 0; i < small.length; i += 500) batches.push(small.slice(i, i + 500))
    yield* Effect.forEach(batches, (batch) =>
      sql`
        INSERT INTO _nice_binary (hash, size, mime_type, data)
        SELECT u.hash, u.size, u.mime,
          lo_from_bytea(0, substring(decode(repeat(encode(b.block, 'hex'), ((u.size + 65535) / 65536)::int), 'hex') FROM 1 FOR u.size))
        FROM unnest(${batch.map(sha1Of)}::text[], ${batch.map((s) => s.seed)}::text[], ${batch.map((s) => s.size)}::int4[],
                    ${batch.map((s) => s.mime)}::text[]) AS u(hash, seed, size, mime)
        CROSS JOIN LATERAL (
          SELECT coalesce(string_agg(sha256(convert_to(u.seed || ':' || g, 'UTF8')), ''::bytea ORDER BY g), ''::bytea) AS block
          FROM generate_series(1, (least(u.size, 65536) + 31) / 32) AS g
        ) AS b`, { concurrency: 2, discard: true })
    for (const spec of specs.filter((s) => s.size > SINGLE_MAX)) {
      const b = block(spec.seed, spec.size)
      const [created] = yield* sql<{ oid: number }>`SELECT lo_create(0) AS oid`
      const oid = created!.oid
      for (let offset = 0; offset < spec.size; offset += SINGLE_MAX) {
        const len = Math.min(SINGLE_MAX, spec.size - offset)
        yield* sql`SELECT lo_put(${oid}, ${offset},
          substring(decode(repeat(encode(${b}::bytea, 'hex'), ${Math.ceil(len / BLOCK)}::int), 'hex') FROM 1 FOR ${len}::int))`
      }
      yield* sql`INSERT INTO _nice_binary (hash, size, mime_type, data) VALUES (${sha1Of(spec)}, ${spec.size}, ${spec.mime}, ${oid})`
    }
  }), 2)

/** Marks every row unmigrated again (for a rerun on the same objects). */
export const resetMarks = (url: string) =>
  withPg(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE _nice_binary ADD COLUMN IF NOT EXISTS sha2 character(64)`
    yield* sql`UPDATE _nice_binary SET sha2 = NULL WHERE sha2 IS NOT NULL`
  }), 1)

export interface Listed {
  readonly hash: string
  readonly oid: number
  readonly size: number
  readonly mime: string
}

/** The rows in key order (what the naive baseline and the raw read pass go through). */
export const listRows = (url: string, limit: number) =>
  withPg(url, Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ hash: string; data: number; size: string | number | bigint; mime_type: string }>`
      SELECT hash, data, size, mime_type FROM _nice_binary ORDER BY hash LIMIT ${limit}`
    return rows.map((r): Listed => ({ hash: r.hash, oid: r.data, size: Number(r.size), mime: r.mime_type }))
  }), 1)

/** Deterministic PRNG (mulberry32) for the realistic mix. */
export const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

export const uniform = (prefix: string, count: number, size: number, from = 0): Array<ObjectSpec> =>
  Array.from({ length: count }, (_, i) => ({ seed: `${prefix}-${from + i}`, size, mime: "application/octet-stream" }))

/**
 * A document store's mix (sizes log-uniform within each band): 60 % 1-16 KiB (letters, thumbnails),
 * 30 % 16 KiB-1 MiB (office files, images), 9 % 1-8 MiB (scans), 1 % 8-32 MiB (videos, big PDFs:
 * the ones above the 20 MiB part size go multipart).
 */
export const mix = (prefix: string, count: number): Array<ObjectSpec> => {
  const rnd = prng(42)
  const KiB = 1024
  const bands: ReadonlyArray<readonly [number, number, number, string]> = [
    [0.6, 1 * KiB, 16 * KiB, "text/plain"],
    [0.9, 16 * KiB, 1024 * KiB, "image/jpeg"],
    [0.99, 1024 * KiB, 8192 * KiB, "application/pdf"],
    [1, 8192 * KiB, 32768 * KiB, "video/mp4"]
  ]
  return Array.from({ length: count }, (_, i) => {
    const r = rnd()
    const [, lo, hi, mime] = bands.find(([p]) => r < p)!
    const size = Math.round(lo * Math.pow(hi / lo, rnd()))
    return { seed: `${prefix}-${i}`, size, mime }
  })
}
