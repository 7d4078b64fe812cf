// The CLI's last line on failure: our errors as they are; a defect or an unmapped library error as
// "unexpected error: <what failed>", never a bare driver message, never with credentials.
import { assert, describe, it } from "@effect/vitest"
import { Cause } from "effect"
import { SqlError } from "effect/sql"
import { DatabaseError } from "../src/domain/Errors.ts"
import { report } from "../src/cli/FailureReport.ts"

const connectionClosed = () =>
  new SqlError.SqlError({
    reason: new SqlError.ConnectionError({
      cause: new Error("Connection closed"),
      message: "PgConnection: Connection closed"
    })
  })

describe("FailureReport", () => {
  it("prints our errors' own messages", () => {
    const line = report(Cause.fail(new DatabaseError({ operation: "record sha2", cause: connectionClosed() })))
    assert.deepStrictEqual(line, { message: "PostgreSQL record sha2 failed: Connection closed", unexpected: false })
  })

  it("a defect carrying a driver error says it is unexpected and what failed", () => {
    const line = report(Cause.die(connectionClosed()))
    assert.deepStrictEqual(line, {
      message: "unexpected error: PostgreSQL ConnectionError: Connection closed",
      unexpected: true
    })
  })

  it("a typed library error that nothing mapped is unexpected too", () => {
    assert.strictEqual(report(Cause.fail(connectionClosed()))?.message, "unexpected error: PostgreSQL ConnectionError: Connection closed")
  })

  it("other defects: their name and message, with passwords in URLs masked", () => {
    const line = report(Cause.die(new TypeError("bad url postgres://app:s3cret@db.example:5432/x")))
    assert.strictEqual(line?.message, "unexpected error: TypeError: bad url postgres://app:***@db.example:5432/x")
    assert.notInclude(line?.message ?? "", "s3cret")
  })

  it("typed failures win over defects; interruptions alone print nothing", () => {
    const both = Cause.combine(Cause.die(new Error("x")), Cause.fail(new DatabaseError({ operation: "list rows", cause: connectionClosed() })))
    assert.strictEqual(report(both)?.message, "PostgreSQL list rows failed: Connection closed")
    assert.isUndefined(report(Cause.interrupt()))
  })
})
