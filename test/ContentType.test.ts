// Stored content types made header-safe (src/domain/ContentType.ts): real-world values from databases
// fed by mail, header injection attempts, and generated values: the result is always a valid HTTP
// header value and media type, never holds CR/LF, and changes only what had to change.
import { assert, describe, it } from "@effect/vitest"
import * as fc from "fast-check"
import * as NodeHttp from "node:http"
import * as ContentType from "../src/domain/ContentType.ts"

// RFC 9110 §8.3.1 media-type with §5.6 tokens and quoted strings, written here independently of the
// module, restricted as the module promises: printable ASCII, spaces as the only whitespace
const tchar = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]"
const grammar = new RegExp(
  `^${tchar}+/${tchar}+(?: *;(?: *${tchar}+=(?:${tchar}+|"(?:[ !\\x23-\\x5B\\x5D-\\x7E]|\\\\[\\x20-\\x7E])*"))?)* *$`
)

const assertHeaderSafe = (value: string, input: unknown) => {
  const context = `${JSON.stringify(input)} -> ${JSON.stringify(value)}`
  assert.match(value, /^[\x20-\x7E]+$/, context)
  assert.notMatch(value, /[\r\n]/, context)
  assert.match(value, grammar, context)
  assert.isAtMost(value.length, ContentType.maxLength, context)
  // what Node's HTTP client checks before it sends a header (the "Invalid character in header content" error)
  assert.doesNotThrow(() => NodeHttp.validateHeaderValue("content-type", value), context)
}

describe("ContentType.headerSafe", () => {
  it("real-world values: kept when sendable, repaired when not, application/octet-stream when not repairable", () => {
    const table: ReadonlyArray<readonly [string | null, string, boolean]> = [
      // [stored, sent, whether a warning is due]
      [null, "application/octet-stream", false],
      ["", "application/octet-stream", false],
      ["   ", "application/octet-stream", false],
      ["  text/plain \r\n", "text/plain", false],
      ["application/pdf", "application/pdf", false],
      ["text/plain; charset=utf-8", "text/plain; charset=utf-8", false],
      ["text/plain;charset=\"UTF-8\"", "text/plain;charset=\"UTF-8\"", false],
      ["TEXT/HTML; Charset=ISO-8859-1", "TEXT/HTML; Charset=ISO-8859-1", false],
      ["application/octet-stream; name=\"a \\\"quoted\\\" name.bin\"", "application/octet-stream; name=\"a \\\"quoted\\\" name.bin\"", false],
      ["application/x-foo; filename*=UTF-8''a%20b.txt", "application/x-foo; filename*=UTF-8''a%20b.txt", false],
      ["text/plain; name=\"Bericht März.txt\"", "text/plain; name*=UTF-8''Bericht%20M%C3%A4rz.txt", true],
      ["application/pdf; name=Übersicht 2024.pdf", "application/pdf; name*=UTF-8''%C3%9Cbersicht%202024.pdf", true],
      ["image/jpeg; name=\"📷 Ferien.jpg\"", "image/jpeg; name*=UTF-8''%F0%9F%93%B7%20Ferien.jpg", true],
      ["text/plain; name=Bericht 2024.txt", "text/plain; name=\"Bericht 2024.txt\"", true],
      // header injection attempts: CR/LF removed, so no second header can ever come of them
      ["text/plain\r\nx-amz-meta-evil: 1", "application/octet-stream", true],
      ["text/plain\r\n\r\nGET / HTTP/1.1", "application/octet-stream", true],
      ["text/html;\r\nx-amz-meta-evil=1", "text/html;x-amz-meta-evil=1", true],
      ["text/plain;\r\n x-amz-acl: public-read", "text/plain", true],
      // a folded mail header
      ["multipart/mixed;\r\n\tboundary=\"----=_Part_0_1.1\"", "multipart/mixed;boundary=\"----=_Part_0_1.1\"", true],
      ["application/pdf\u0000", "application/pdf", true],
      ["text/\u0000plain", "text/plain", true],
      ["text/plain\u007F; charset=utf-8", "text/plain; charset=utf-8", true],
      ["täxt/plain", "application/octet-stream", true],
      ["text/plain; charset=utf-8; name=\"unterminated", "text/plain; charset=utf-8; name=unterminated", true],
      ["text/plain; charset", "text/plain", true],
      ["text plain", "application/octet-stream", true],
      [`text/plain; x-note="${"a".repeat(5000)}"`, "text/plain", true],
      [`text/plain; charset=utf-8; x-note="${"ü".repeat(2000)}"`, "text/plain; charset=utf-8", true],
      [`${"x".repeat(600)}/${"y".repeat(600)}`, "application/octet-stream", true]
    ]
    for (const [stored, sent, warned] of table) {
      const safe = ContentType.headerSafe(stored)
      assert.strictEqual(safe.value, sent, JSON.stringify(stored))
      assert.strictEqual(safe.changes.length > 0, warned, `${JSON.stringify(stored)}: ${safe.changes.join("; ")}`)
      assertHeaderSafe(safe.value, stored)
    }
  })

  it("the warning names the row and the changes, quotes at most a capped part of the stored value, on one line", () => {
    const huge = `text/plain; name="März"; x-note="${"a".repeat(100_000)}"`
    const w = ContentType.forRow("0123abc", huge).warning!
    assert.include(w, "row 0123abc:")
    assert.include(w, "name*=UTF-8''M%C3%A4rz")
    assert.include(w, "encoded as RFC 8187")
    assert.include(w, "dropped past 1024 characters")
    assert.include(w, `(${huge.length} characters)`)
    assert.isBelow(w.length, 1000)
    const many = ContentType.forRow("k", `text/plain${"; a".repeat(1_000_000)}`)
    assert.strictEqual(many.contentType, "text/plain")
    assert.isBelow(many.warning!.length, 1000)
    assert.include(many.warning!, "more change(s)")
    const injected = ContentType.forRow("k", "text/plain\r\nx-amz-meta-evil: 1").warning!
    assert.notMatch(injected, /[\r\n]/)
    assert.include(injected, "control characters removed")
    // invisible characters are shown escaped: the stored value can be told from the sent one
    assert.include(ContentType.forRow("k", "text/plain\u007F\u2028").warning!, '"text/plain\\u007f\\u2028"')
    assert.isUndefined(ContentType.forRow("k", "text/plain").warning)
    assert.isUndefined(ContentType.forRow("k", null).warning)
  })

  // pieces of content types, of header syntax and of trouble, so generated values are often near-valid
  const piece = fc.constantFrom(
    "text", "/", "plain", "application", ";", " ", "=", "\"", "\\", "\r", "\n", "\r\n", "\t", "\u0000", "\u007F",
    "name", "charset", "utf-8", "*", "'", "%", "ä", "Ü", "📷", "\ud83d", "\u00A0", "\u2028", ":", "x-amz-meta-evil", ","
  )
  const values = fc.oneof(
    fc.string({ unit: "binary", maxLength: 80 }),
    fc.array(piece, { maxLength: 40 }).map((ps) => ps.join("")),
    fc.tuple(fc.array(piece, { maxLength: 10 }), fc.integer({ min: 0, max: 3000 })).map(([ps, n]) => `text/plain; a="${"x".repeat(n)}${ps.join("")}"`)
  )

  it("any value: the result is a header-safe media type, and making it safe again changes nothing", () => {
    fc.assert(
      fc.property(values, (stored) => {
        const safe = ContentType.headerSafe(stored)
        assertHeaderSafe(safe.value, stored)
        const again = ContentType.headerSafe(safe.value)
        assert.strictEqual(again.value, safe.value, JSON.stringify(stored))
        assert.deepStrictEqual(again.changes, [], JSON.stringify(stored))
      }),
      { numRuns: 3000 }
    )
  })

  it("a value that is already a sendable media type is sent as it is, without a warning", () => {
    const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,12}$/)
    const parameter = fc.tuple(
      token,
      fc.oneof(token, fc.stringMatching(/^[ !#-[\]-~]{0,12}$/).map((v) => `"${v}"`))
    ).map(([n, v]) => `; ${n}=${v}`)
    fc.assert(
      fc.property(token, token, fc.array(parameter, { maxLength: 4 }), (type, subtype, params) => {
        const stored = `${type}/${subtype}${params.join("")}`
        assert.deepStrictEqual(ContentType.headerSafe(stored), { value: stored, changes: [] })
      }),
      { numRuns: 1000 }
    )
  })
})
