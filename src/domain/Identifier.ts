/**
 * SQL identifiers from settings (`--table`, `--key-column`, ...): parsed from what the user wrote and
 * only ever put into SQL quoted, so mixed case, spaces, quotes or keywords cannot change a statement.
 *
 * Syntax: parts separated by ".", each part either as written (case kept: `My Table` is the table
 * named exactly that) or in double quotes with `""` for a quote, to include a dot (`"a.b"`).
 */

/** The parts of `text`, or a message saying what is wrong. */
export const parse = (text: string): ReadonlyArray<string> | string => {
  const parts: Array<string> = []
  let i = 0
  while (true) {
    let part = ""
    if (text[i] === "\"") {
      i++
      while (true) {
        if (i >= text.length) return `${JSON.stringify(text)} has an unterminated quote`
        if (text[i] === "\"") {
          if (text[i + 1] === "\"") {
            part += "\""
            i += 2
            continue
          }
          i++
          break
        }
        part += text[i]
        i++
      }
      if (i < text.length && text[i] !== ".") return `${JSON.stringify(text)}: expected "." after a quoted name`
    } else {
      const end = text.indexOf(".", i)
      part = text.slice(i, end === -1 ? text.length : end)
      i = end === -1 ? text.length : end
    }
    if (part === "") return `${JSON.stringify(text)} has an empty name`
    if (part.includes("\u0000")) return `${JSON.stringify(text)} contains a NUL character`
    parts.push(part)
    if (i >= text.length) return parts
    i++ // the "."
    if (i >= text.length) return `${JSON.stringify(text)} ends with "."`
  }
}

/** One identifier, quoted for PostgreSQL. */
export const quote = (name: string): string => `"${name.replaceAll("\"", "\"\"")}"`

/** A possibly schema-qualified name, each part quoted. */
export const quoteQualified = (parts: ReadonlyArray<string>): string => parts.map(quote).join(".")
