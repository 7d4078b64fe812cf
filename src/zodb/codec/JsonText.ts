/**
 * Small text pieces of the codec's JSON: strings escaped as zodb-json-codec's JsonWriter escapes them
 * (only `"`, `\` and control characters; everything else raw UTF-8), base64 and hex of bytes.
 */
import { Buffer } from "node:buffer"

const NEEDS_ESCAPE = /["\\\u0000-\u001f]/

/** A JSON string literal, escaped like the codec's `write_escaped`. */
export const quote = (s: string): string => NEEDS_ESCAPE.test(s) ? '"' + escapeSlow(s) + '"' : '"' + s + '"'

const escapeSlow = (s: string): string => {
  let out = ""
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x22) out += '\\"'
    else if (c === 0x5c) out += "\\\\"
    else if (c === 0x0a) out += "\\n"
    else if (c === 0x0d) out += "\\r"
    else if (c === 0x09) out += "\\t"
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16)
    else out += s[i]
  }
  return out
}

/** Standard base64 with padding (the codec's BASE64 engine). */
export const base64 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64")

export const base64Utf8 = (s: string): string => Buffer.from(s, "utf8").toString("base64")

const HEX: ReadonlyArray<string> = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

/** Lowercase hex, as `hex::encode`. */
export const hex = (b: Uint8Array): string => {
  let s = ""
  for (let i = 0; i < b.length; i++) s += HEX[b[i]!]
  return s
}
