// Every relative link of the documentation resolves: README.md, docs/*.md, RELIABILITY.md and
// BENCHMARKS.md link only to files that exist and, for `#anchor`s into markdown files, to a heading that
// exists there (slugged as GitHub does: lowercased, punctuation dropped, spaces to hyphens, repeats
// numbered -1, -2, …). Links inside code (fenced blocks, inline spans) are not links and are skipped.
import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

const docs = (): Array<string> => [
  "README.md",
  "RELIABILITY.md",
  "BENCHMARKS.md",
  ...NodeFs.readdirSync(NodePath.join(root, "docs")).filter((f) => f.endsWith(".md")).sort().map((f) => `docs/${f}`)
]

/** The file's lines outside fenced code blocks (``` or ~~~), with inline code spans blanked. */
const proseLines = (text: string): Array<string> => {
  const out: Array<string> = []
  let fence: string | undefined
  for (const line of text.split("\n")) {
    const opening = /^\s{0,3}(`{3,}|~{3,})/.exec(line)
    if (fence !== undefined) {
      if (opening !== null && opening[1]![0] === fence[0] && opening[1]!.length >= fence.length) fence = undefined
      out.push("")
    } else if (opening !== null) {
      fence = opening[1]!
      out.push("")
    } else {
      out.push(line.replace(/(`+)(?:(?!\1).)+?\1/g, (m) => " ".repeat(m.length)))
    }
  }
  return out
}

/** GitHub's heading slug (github-slugger): lowercase, keep letters, marks, digits, `_`, `-` and spaces. */
const slug = (heading: string): string =>
  heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1") // links and images: their text
    .replace(/<[^>]+>/g, "") // inline HTML
    .replace(/`/g, "")
    .replace(/\*/g, "")
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, "")
    .replace(/ /g, "-")

const anchorsCache = new Map<string, Set<string>>()
const anchorsOf = (file: string): Set<string> => {
  const cached = anchorsCache.get(file)
  if (cached !== undefined) return cached
  const text = NodeFs.readFileSync(file, "utf8")
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let fence: string | undefined
  for (const line of text.split("\n")) {
    const opening = /^\s{0,3}(`{3,}|~{3,})/.exec(line)
    if (fence !== undefined) {
      if (opening !== null && opening[1]![0] === fence[0] && opening[1]!.length >= fence.length) fence = undefined
      continue
    }
    if (opening !== null) {
      fence = opening[1]!
      continue
    }
    const heading = /^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading !== null) {
      const base = slug(heading[1]!)
      const n = seen.get(base) ?? 0
      seen.set(base, n + 1)
      anchors.add(n === 0 ? base : `${base}-${n}`)
    }
    for (const m of line.matchAll(/<a\s+(?:name|id)="([^"]+)"/g)) anchors.add(m[1]!)
  }
  anchorsCache.set(file, anchors)
  return anchors
}

interface Link {
  readonly line: number
  readonly target: string
}

const linksOf = (text: string): Array<Link> =>
  proseLines(text).flatMap((line, i) => [
    ...[...line.matchAll(/\]\(\s*<([^>]+)>[^)]*\)|\]\(\s*([^)\s]+)(?:\s+"[^"]*")?\s*\)/g)].map((m) => ({
      line: i + 1,
      target: (m[1] ?? m[2])!
    })),
    ...[...line.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?([^>\s]+)>?/g)].map((m) => ({ line: i + 1, target: m[1]! }))
  ])

const isExternal = (target: string): boolean => /^[a-z][a-z0-9+.-]*:/i.test(target)

/** What is wrong with one link of `from`, or undefined when it resolves. */
const problemOf = (from: string, target: string): string | undefined => {
  const hash = target.indexOf("#")
  const pathPart = decodeURIComponent(hash === -1 ? target : target.slice(0, hash))
  const anchor = hash === -1 ? undefined : decodeURIComponent(target.slice(hash + 1))
  const file = pathPart === "" ? NodePath.join(root, from) : NodePath.resolve(NodePath.dirname(NodePath.join(root, from)), pathPart)
  if (!NodeFs.existsSync(file)) return `no file ${NodePath.relative(root, file)}`
  if (anchor === undefined || anchor === "") return undefined
  if (!file.endsWith(".md")) return undefined
  return anchorsOf(file).has(anchor) ? undefined : `no heading #${anchor} in ${NodePath.relative(root, file)}`
}

describe("documentation links", () => {
  it("the slug follows GitHub's rules", () => {
    assert.strictEqual(slug("1. `lo-migrate plan` (or `migrate --dry-run`)"), "1-lo-migrate-plan-or-migrate---dry-run")
    assert.strictEqual(slug("S3 servers: what each one checks"), "s3-servers-what-each-one-checks")
    assert.strictEqual(slug("`--profile relstorage` and zodb-convert"), "--profile-relstorage-and-zodb-convert")
    assert.strictEqual(slug("prune: the index on `blob_chunk(chunk)`"), "prune-the-index-on-blob_chunkchunk")
  })

  it("every relative link of README.md, docs/*.md, RELIABILITY.md and BENCHMARKS.md resolves", () => {
    const problems: Array<string> = []
    let checked = 0
    for (const from of docs()) {
      for (const { line, target } of linksOf(NodeFs.readFileSync(NodePath.join(root, from), "utf8"))) {
        if (isExternal(target)) continue
        checked++
        const problem = problemOf(from, target)
        if (problem !== undefined) problems.push(`${from}:${line}: (${target}): ${problem}`)
      }
    }
    assert.deepStrictEqual(problems, [])
    assert.isAbove(checked, 50, "the links were found")
  })
})
