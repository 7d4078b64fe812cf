/**
 * The deferred mode's manifest: a TSV file with a header and one line per staged object.
 *
 *   staged_path  s3_key  row_key  size  sha256  sha1  md5  content_type  oid
 *
 * Fields escape backslash, tab, CR and LF as `\\`, `\t`, `\r`, `\n`, so any row key or content type
 * round-trips. A line counts only once it ends with a newline and is on disk (fsync): a line torn by a
 * crash has no newline, is ignored by readers and cut off by the next staging run.
 */
import { Effect } from "effect"
import * as NodeFsP from "node:fs/promises"
import * as NodeReadline from "node:readline"
import { ManifestError } from "../domain/Errors.ts"

export const columns = ["staged_path", "s3_key", "row_key", "size", "sha256", "sha1", "md5", "content_type", "oid"] as const
export const header = `${columns.join("\t")}\n`

export interface Entry {
  /** absolute path of the staged copy of the object */
  readonly stagedPath: string
  readonly s3Key: string
  readonly rowKey: string
  readonly size: number
  /** lowercase hex */
  readonly sha256: string
  /** lowercase hex */
  readonly sha1: string
  /** base64 */
  readonly md5: string
  readonly contentType: string
  readonly oid: number | null
}

const escape = (s: string) => s.replace(/[\\\t\r\n]/g, (c) => (c === "\\" ? "\\\\" : c === "\t" ? "\\t" : c === "\r" ? "\\r" : "\\n"))
const unescape = (s: string) => s.replace(/\\(.)/g, (_, c: string) => (c === "t" ? "\t" : c === "r" ? "\r" : c === "n" ? "\n" : c))

export const encode = (e: Entry): string =>
  `${[e.stagedPath, e.s3Key, e.rowKey, String(e.size), e.sha256, e.sha1, e.md5, e.contentType, e.oid === null ? "" : String(e.oid)].map(escape).join("\t")}\n`

/** Parses one line (without its newline); a string says what is wrong with it. */
export const decode = (line: string): Entry | string => {
  const f = line.split("\t").map(unescape)
  if (f.length !== columns.length) return `has ${f.length} fields, expected ${columns.length}`
  const [stagedPath, s3Key, rowKey, size, sha256, sha1, md5, contentType, oid] = f as [string, string, string, string, string, string, string, string, string]
  if (!/^\d+$/.test(size)) return `size ${JSON.stringify(size)} is not a number`
  if (!/^[0-9a-f]{64}$/.test(sha256)) return `sha256 ${JSON.stringify(sha256)} is not 64 hex digits`
  if (oid !== "" && !/^\d+$/.test(oid)) return `oid ${JSON.stringify(oid)} is not a number`
  if (stagedPath === "" || s3Key === "" || rowKey === "") return "has an empty path, key or row key"
  return { stagedPath, s3Key, rowKey, size: Number(size), sha256, sha1, md5, contentType, oid: oid === "" ? null : Number(oid) }
}

/** Checks that `path` is a readable manifest (its header), without reading further. */
export const checkHeader = (path: string): Effect.Effect<void, ManifestError> =>
  Effect.tryPromise({
    try: async () => {
      const handle = await NodeFsP.open(path, "r")
      try {
        const buffer = Buffer.alloc(header.length)
        const { bytesRead } = await handle.read(buffer, 0, header.length, 0)
        return buffer.subarray(0, bytesRead).toString("utf8")
      } finally {
        await handle.close()
      }
    },
    catch: unreadable(path)
  }).pipe(
    Effect.flatMap((first) =>
      first === header
        ? Effect.void
        : Effect.fail(new ManifestError({
          path,
          problem: first === "" ? "is empty (no header)" : `line 1 is not the lo-migrate manifest header (${columns.join(", ")})`,
          fix: notOurs
        }))
    )
  )

const notOurs = "give the manifest a deferred run wrote (migrate --deferred-blobs FILE, zodb-convert --deferred-blobs FILE)"

const unreadable = (path: string) => (cause: unknown) => {
  const code = (cause as { code?: string }).code
  return new ManifestError({
    path,
    problem: `cannot be read (${code ?? String(cause)})`,
    fix: code === "ENOENT" ? notOurs : undefined
  })
}

/** One complete line of the manifest, with its 1-based line number (the header is line 1). */
export interface Line {
  readonly number: number
  readonly entry: Entry | string
}

/**
 * Calls `f` for each complete entry line, streaming (the manifest is never held in memory). Fails with
 * ManifestError when the file is missing or its header is not this format.
 */
export const forEachLine = <E, R>(
  path: string,
  f: (line: Line) => Effect.Effect<void, E, R>
): Effect.Effect<void, E | ManifestError, R> =>
  Effect.gen(function*() {
    // opened first, so a missing or unreadable file is an error here, not an event on a stream
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => NodeFsP.open(path, "r"), catch: unreadable(path) }),
      (h) => Effect.promise(() => h.close().catch(() => undefined))
    )
    // A line counts when its newline lies within the size seen now: a torn last line (no newline)
    // and lines appended meanwhile (a staging run still going) are left for the next run.
    const size = (yield* Effect.tryPromise({ try: () => handle.stat(), catch: unreadable(path) })).size
    const lines = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const stream = handle.createReadStream({ encoding: "utf8", autoClose: false, start: 0 })
        const rl = NodeReadline.createInterface({ input: stream, crlfDelay: Infinity })
        return { rl, stream, iterator: rl[Symbol.asyncIterator]() }
      }),
      ({ rl, stream }) => Effect.sync(() => {
        rl.close()
        stream.destroy()
      })
    )
    const next = () =>
      Effect.tryPromise({
        try: () => lines.iterator.next(),
        catch: unreadable(path)
      })
    let number = 0
    let bytes = 0
    while (true) {
      const r = yield* next()
      if (r.done === true) break
      number++
      bytes += Buffer.byteLength(r.value) + 1
      if (bytes > size) break
      if (number === 1) {
        if (`${r.value}\n` !== header) {
          return yield* new ManifestError({ path, problem: `line 1 is not the lo-migrate manifest header (${columns.join(", ")})`, fix: notOurs })
        }
        continue
      }
      yield* f({ number, entry: decode(r.value) })
    }
    if (number === 0) return yield* new ManifestError({ path, problem: "is empty (no header)", fix: notOurs })
  }).pipe(Effect.scoped)

/**
 * The lines `forEachLine` would give now and the bytes they name (a malformed line: none), in one read:
 * what an upload of the manifest has ahead of it. Lines a staging run appends later are not counted.
 */
export const totals = (path: string): Effect.Effect<{ readonly lines: number; readonly bytes: number }, ManifestError> =>
  Effect.suspend(() => {
    let lines = 0
    let bytes = 0
    return forEachLine(path, (line) =>
      Effect.sync(() => {
        lines++
        if (typeof line.entry !== "string") bytes += line.entry.size
      })).pipe(Effect.map(() => ({ lines, bytes })))
  })
