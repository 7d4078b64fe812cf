/**
 * A stored content type (`mime_type`, `--mime-column`, a manifest's `content_type`) as a value that can
 * travel as the Content-Type header of a PUT. Databases fed by mail hold values no HTTP stack sends:
 * CR/LF (a folded header, or an attempt to add one), non-ASCII file names in parameters, NUL. A row's
 * data must never abort the run nor add a header, so the value is made header-safe:
 *
 * - surrounding whitespace is trimmed; NULL or empty: `application/octet-stream` (S3's own default);
 * - control characters (U+0000-U+001F and U+007F: CR, LF, TAB, NUL, DEL) are removed wherever they are;
 * - a value that is then a media type of RFC 9110 §8.3.1 in printable ASCII, at most `maxLength`
 *   characters, is sent as it is;
 * - otherwise it is rebuilt (from its first 16 KiB: no more could fit): a type/subtype that is not two tokens cannot be repaired and becomes
 *   `application/octet-stream`; a parameter keeps its value as a token, as a quoted string when it is
 *   printable ASCII, or encoded as RFC 8187 does when not (`name="Bericht März.txt"` becomes
 *   `name*=UTF-8''Bericht%20M%C3%A4rz.txt`); a parameter without a token name or a value is dropped,
 *   and so are the parameters past `maxLength` characters.
 *
 * Pure: each result says what was changed, and the caller logs it with the row's key.
 */

/** The content type of rows without a usable one: S3's own default for unknown data. */
export const fallback = "application/octet-stream"

/** Longest value sent: far beyond any real content type, far below the header limits of S3 servers. */
export const maxLength = 1024

/** How much of a stored value a warning quotes, and how many of its changes it names. */
const shownMax = 120
const changesShown = 5
/** How much of a stored value is parsed: what lies further can never fit into `maxLength`. */
const parsedMax = 16 * maxLength

export interface HeaderSafe {
  /** what to send as Content-Type: printable ASCII, a valid media type, at most `maxLength` characters */
  readonly value: string
  /** what was changed to get it, in words; empty when the stored value is sent (trimmed) as it is */
  readonly changes: ReadonlyArray<string>
}

const tokenChars = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+"
const token = new RegExp(`^${tokenChars}$`)
const quoted = '"(?:[\\x20\\x21\\x23-\\x5B\\x5D-\\x7E]|\\\\[\\x20-\\x7E])*"'
/** RFC 9110 media-type, with spaces as its only whitespace and printable ASCII only */
export const mediaType = new RegExp(`^${tokenChars}/${tokenChars}(?: *;(?: *${tokenChars}=(?:${tokenChars}|${quoted}))?)* *$`)
const controls = /[\u0000-\u001F\u007F]/g
const printable = /^[\x20-\x7E]*$/
/** RFC 8187 attr-char: what an ext-value keeps as it is */
const attrChar = /^[A-Za-z0-9!#$&+\-.^_`|~]$/

const isToken = (s: string) => token.test(s)

/** `s` in JSON, every invisible character escaped (`\r`, `\u007f`: never breaks a log line), at most `max` characters of it. */
const shown = (s: string, max = 40) => {
  const json = (t: string) => JSON.stringify(t).replace(/[\u007F-\u009F\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
  return s.length <= max ? json(s) : `${json(s.slice(0, max))}… (${s.length} characters)`
}

const quote = (v: string) => `"${v.replace(/["\\]/g, (c) => `\\${c}`)}"`

/** RFC 8187 ext-value: UTF-8 bytes, percent-encoded except attr-chars (a lone surrogate becomes U+FFFD). */
const extValue = (v: string) => {
  let out = "UTF-8''"
  for (const byte of new TextEncoder().encode(v)) {
    const c = String.fromCharCode(byte)
    out += byte < 0x80 && attrChar.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`
  }
  return out
}

/** The header-safe form of a stored content type (see the module's comment for the rule). */
export const headerSafe = (raw: string | null | undefined): HeaderSafe => {
  const trimmed = (raw ?? "").trim()
  const cleaned = trimmed.replace(controls, "").trim()
  // trimming is no change worth a word (a trailing CR/LF is whitespace); controls inside are
  const changes: Array<string> = cleaned !== trimmed ? ["control characters removed"] : []
  if (cleaned === "") return { value: fallback, changes }
  if (cleaned.length <= maxLength && mediaType.test(cleaned)) return { value: cleaned, changes }
  if (cleaned.length > parsedMax) changes.push(`cut at ${parsedMax} of ${cleaned.length} characters`)
  return rebuild(cleaned.slice(0, parsedMax), changes)
}

interface Parameter {
  readonly name: string
  readonly value: string
  readonly quoted: boolean
}

/** Parses leniently (no control characters left) and writes the value anew; `changes` gets what differs. */
const rebuild = (s: string, changes: Array<string>): HeaderSafe => {
  const semi = s.indexOf(";")
  const media = (semi === -1 ? s : s.slice(0, semi)).trim()
  const slash = media.indexOf("/")
  const type = media.slice(0, slash)
  const subtype = media.slice(slash + 1)
  if (slash === -1 || !isToken(type) || !isToken(subtype) || media.length > maxLength) {
    changes.push(`type/subtype ${shown(media)} cannot be sent, so ${fallback}`)
    return { value: fallback, changes }
  }
  const parameters: Array<Parameter> = []
  let i = semi === -1 ? s.length : semi
  while (i < s.length) {
    // here s[i] is ";"
    let j = i + 1
    while (j < s.length && s[j] !== "=" && s[j] !== ";") j++
    const name = s.slice(i + 1, j).trim()
    if (j >= s.length || s[j] === ";") {
      if (name !== "") changes.push(`parameter ${shown(name)} without a value dropped`)
      i = j
      continue
    }
    let k = j + 1
    while (s[k] === " ") k++
    if (s[k] === "\"") {
      let value = ""
      let closed = false
      for (k++; k < s.length; k++) {
        if (s[k] === "\\" && k + 1 < s.length) value += s[++k]
        else if (s[k] === "\"") {
          closed = true
          k++
          break
        } else value += s[k]
      }
      let end = k
      while (end < s.length && s[end] !== ";") end++
      const rest = s.slice(k, end).trim()
      if (!closed) changes.push(`the quoted value of ${shown(name)} closed`)
      if (rest !== "") changes.push(`text after the quoted value of ${shown(name)} taken into it`)
      parameters.push({ name, value: value + rest, quoted: rest === "" })
      i = end
    } else {
      let end = k
      while (end < s.length && s[end] !== ";") end++
      parameters.push({ name, value: s.slice(k, end).trim(), quoted: false })
      i = end
    }
  }

  let value = `${type}/${subtype}`
  let dropped = 0
  for (const p of parameters) {
    let written: string | undefined
    if (!isToken(p.name)) {
      changes.push(`parameter ${shown(p.name)} dropped: its name is not a token`)
    } else if (p.name.endsWith("*")) {
      // already RFC 8187: its value (charset'language'percent-encoded) is a token, or it is broken
      if (isToken(p.value)) written = `${p.name}=${p.value}`
      else changes.push(`parameter ${shown(p.name)} dropped: not an RFC 8187 value`)
    } else if (isToken(p.value)) {
      written = `${p.name}=${p.value}`
    } else if (printable.test(p.value)) {
      written = `${p.name}=${quote(p.value)}`
      if (!p.quoted) changes.push(`the value of ${shown(p.name)} quoted`)
    } else {
      written = `${p.name}*=${extValue(p.value)}`
      changes.push(`the value of ${shown(p.name)} encoded as RFC 8187 (${p.name}*=UTF-8''…)`)
    }
    if (written === undefined) continue
    if (dropped > 0 || value.length + 2 + written.length > maxLength) dropped++
    else value += `; ${written}`
  }
  if (dropped > 0) changes.push(`${dropped} parameter(s) dropped past ${maxLength} characters`)
  // what the parse repaired without a word (e.g. spacing around a non-ASCII space) still counts
  if (changes.length === 0 && value !== s) changes.push("rewritten as a valid media type")
  return { value, changes }
}

/** The warning for a row whose content type had to change; undefined when it did not. */
export const warning = (rowKey: string, raw: string | null | undefined, safe: HeaderSafe): string | undefined =>
  safe.changes.length === 0
    ? undefined
    : `row ${rowKey}: content type ${shown(raw ?? "", shownMax)} cannot be sent as a header; sending ${
      JSON.stringify(safe.value)
    } (${safe.changes.slice(0, changesShown).join("; ")}${
      safe.changes.length > changesShown ? `; ${safe.changes.length - changesShown} more change(s)` : ""
    })`

/** A row's content type to send, and the warning to log when it differs from the stored one. */
export const forRow = (
  rowKey: string,
  raw: string | null | undefined
): { readonly contentType: string; readonly warning: string | undefined } => {
  const safe = headerSafe(raw)
  return { contentType: safe.value, warning: warning(rowKey, raw, safe) }
}
