// The CLI flags that point lo-migrate at a test's database and bucket.
import { Effect } from "effect"
import { TestDatabase } from "./Postgres.ts"
import { TestS3 } from "./S3.ts"

export const pgFlags = Effect.gen(function*() {
  const db = yield* TestDatabase
  return ["--pg-url", db.url]
})

/** `--pg-url … --bucket …` for the test servers; `endpoint` replaces the S3 URL (e.g. a fault proxy's). */
export const targetVia = (endpoint?: string) =>
  Effect.gen(function*() {
    const db = yield* TestDatabase
    const s3 = yield* TestS3
    return ["--pg-url", db.url, "--s3-url", endpoint ?? s3.endpoint, "--access-key", s3.accessKey, "--secret-key", s3.secretKey, "--bucket", s3.bucket]
  })

export const target = targetVia()
