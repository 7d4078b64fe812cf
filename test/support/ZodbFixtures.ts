// The golden ZODB fixtures (test/data/zodb, copied unchanged; see its README.md): expected codec output per record,
// read with each state's JSON text kept byte for byte.
import { existsSync, readFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { gunzipSync } from "node:zlib"

/** The fixture directory: $ZODB_FIXTURES_DIR (a regenerated set), else the repository's copy. */
export const zodbFixtures = (): string => {
  const env = process.env.ZODB_FIXTURES_DIR
  if (env !== undefined && env !== "") return env
  return resolve(dirname(fileURLToPath(import.meta.url)), "..", "data", "zodb")
}

export const fixturesPresent = (): boolean => existsSync(resolve(zodbFixtures(), "README.md"))

export interface ExpectedRecord {
  readonly tid: string
  readonly zoid: string
  readonly classMod: string | null
  readonly className: string | null
  /** the codec's state JSON exactly as it wrote it; null for a record without data */
  readonly stateText: string | null
  readonly refs: ReadonlyArray<string>
  readonly stateSize: number
  readonly pickle: Uint8Array | null
  readonly kind: string
}

/** Where the JSON value starting at `start` ends (exclusive). */
const valueEnd = (text: string, start: number): number => {
  const first = text[start]
  if (first !== "{" && first !== "[" && first !== '"') return start + text.slice(start).search(/[,}\]]/)
  let depth = 0
  let inString = false
  for (let i = start; i < text.length; i++) {
    const c = text[i]
    if (inString) {
      if (c === "\\") i++
      else if (c === '"') {
        inString = false
        if (depth === 0) return i + 1
      }
    } else if (c === '"') inString = true
    else if (c === "{" || c === "[") depth++
    else if ((c === "}" || c === "]") && --depth === 0) return i + 1
  }
  throw new Error("unterminated JSON value")
}

const parseLine = (line: string): ExpectedRecord => {
  const r = JSON.parse(line) as {
    tid: string
    zoid: string
    class_mod: string | null
    class_name: string | null
    refs: Array<string>
    state_size: number
    pickle_b64?: string | null
    kind: string
  }
  const at = line.indexOf('"state":') + '"state":'.length
  const stateText = line.slice(at, valueEnd(line, at))
  return {
    tid: r.tid,
    zoid: r.zoid,
    classMod: r.class_mod,
    className: r.class_name,
    stateText: stateText === "null" && r.kind === "no-data" ? null : stateText,
    refs: r.refs,
    stateSize: r.state_size,
    pickle: r.pickle_b64 === undefined || r.pickle_b64 === null
      ? null
      : new Uint8Array(Buffer.from(r.pickle_b64, "base64")),
    kind: r.kind
  }
}

/** expected/NAME.jsonl (filestorage, history, relstorage-hf...). */
export const expectedRecords = (name: string): Array<ExpectedRecord> =>
  readFileSync(resolve(zodbFixtures(), "expected", `${name}.jsonl`), "utf8").trim().split("\n").map(parseLine)

/** bench-scale/expected-codec.jsonl.gz (no pickles: they are in bench-scale/Data.fs). */
export const benchExpected = (): Array<ExpectedRecord> =>
  gunzipSync(readFileSync(resolve(zodbFixtures(), "bench-scale", "expected-codec.jsonl.gz"))).toString("utf8").trim()
    .split("\n").map(parseLine)

export interface ExpectedLoss {
  readonly source: string
  readonly tid: string
  readonly zoid: string
  readonly reason: string
}

export const expectedLosses = (): Array<ExpectedLoss> =>
  readFileSync(resolve(zodbFixtures(), "expected", "codec-losses.jsonl"), "utf8").trim().split("\n").map((l) =>
    JSON.parse(l) as ExpectedLoss
  )

export interface ExpectedTransaction {
  readonly tid: string
  readonly extension_json: string | null
}

export const expectedTransactions = (name: string): Array<ExpectedTransaction> =>
  readFileSync(resolve(zodbFixtures(), "expected", `${name}-transactions.jsonl`), "utf8").trim().split("\n").map((l) =>
    JSON.parse(l) as ExpectedTransaction
  )
