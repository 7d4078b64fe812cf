// The generic table the `--profile table` tests migrate: docs(tenant int, name text, content oid,
// mime text), keyed by (tenant, name), and the flags that point the tool at it.
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import { createLargeObject, randomBytes, sha256Hex } from "./Nice2Fixture.ts"

export interface Doc {
  readonly tenant: number
  readonly name: string
  readonly bytes: Uint8Array
  readonly sha256: string
  readonly mime: string | null
}

export const docsArgs = [
  "--profile", "table", "--table", "docs", "--oid-column", "content",
  "--key-column", "tenant", "--key-column", "name", "--mime-column", "mime",
  "--key-template", "docs/{key}/{sha256}"
]

/** `n` rows over 3 tenants, every other one with a mime type; the table is created if missing. */
export const createDocs = (
  n: number,
  seed: number,
  options: { readonly names: (i: number) => string; readonly size: (i: number) => number }
) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE IF NOT EXISTS docs (tenant integer NOT NULL, name text NOT NULL, content oid, mime text,
      PRIMARY KEY (tenant, name))`
    const docs: Array<Doc> = []
    for (let i = 0; i < n; i++) {
      const bytes = randomBytes(options.size(i), seed + i)
      const doc = { tenant: i % 3, name: options.names(i), bytes, sha256: sha256Hex(bytes), mime: i % 2 === 0 ? "text/plain" : null }
      const oid = yield* createLargeObject(bytes)
      yield* sql`INSERT INTO docs (tenant, name, content, mime) VALUES (${doc.tenant}, ${doc.name}, ${oid}, ${doc.mime})`
      docs.push(doc)
    }
    return docs
  })

export const sameBytes = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b))
