/**
 * Which source a run reads (`--profile`) and which slice of it (`--shard i/n`): validated settings,
 * turned into the phase services by `profiles/Profiles.ts`. Identifiers given by users are parsed here and
 * only ever reach SQL quoted (`Identifier.ts`).
 */
import { Effect, Redacted } from "effect"
import * as ConnInfo from "./ConnInfo.ts"
import { SettingsError } from "./Errors.ts"
import * as Identifier from "./Identifier.ts"

export const profiles = ["nice2", "table", "relstorage"] as const
export type ProfileName = typeof profiles[number]

/** One of `count` disjoint slices of the rows: those whose key hashes to `index` (0-based). */
export interface Shard {
  readonly index: number
  readonly count: number
}

export interface TableProfile {
  readonly _tag: "table"
  /** schema-qualified or not, each part as written (unquoted) */
  readonly table: ReadonlyArray<string>
  readonly oidColumn: string
  /** one or more: a composite key pages over the row value */
  readonly keyColumns: ReadonlyArray<string>
  readonly mimeColumn: string | undefined
  /** the row's size claim; without it the size is read from the large object itself */
  readonly sizeColumn: string | undefined
  readonly sha256Column: string
  /** S3 key of an object: `{sha256}`, `{key}`, `{oid}` and literal text */
  readonly keyTemplate: string
}

export interface RelStorageProfile {
  readonly _tag: "relstorage"
  /** bytes: blobs at least this large go to S3, smaller ones inline into blob_state.data */
  readonly blobThreshold: number
  /** prepended (with "/") to the S3 keys `blobs/{zoid:016x}/{tid:016x}.blob` */
  readonly s3Prefix: string | undefined
  /** blob_state in another database; undefined: next to blob_chunk */
  readonly destPgUrl: Redacted.Redacted<string> | undefined
  /**
   * `--for zodb-pgjsonb`: blob_state is for zodb-pgjsonb, so it must not go next to RelStorage's
   * object_state (a database zodb-pgjsonb cannot use); undefined: no such claim (warned about)
   */
  readonly consumer: "zodb-pgjsonb" | undefined
}

/** What `--for` accepts. */
export const consumers = ["zodb-pgjsonb"] as const

export const defaultBlobThreshold = 100 * 1024

export type Profile = { readonly _tag: "nice2" } | TableProfile | RelStorageProfile

export const nice2: Profile = { _tag: "nice2" }

/** What the CLI (or a library caller) gives; names of the flags they come from. */
export interface ProfileInput {
  readonly profile?: string | undefined
  readonly table?: string | undefined
  readonly oidColumn?: string | undefined
  readonly keyColumns?: ReadonlyArray<string> | undefined
  readonly mimeColumn?: string | undefined
  readonly sizeColumn?: string | undefined
  readonly sha256Column?: string | undefined
  readonly keyTemplate?: string | undefined
  readonly shard?: string | undefined
  readonly blobThreshold?: number | undefined
  readonly s3Prefix?: string | undefined
  readonly destPgUrl?: Redacted.Redacted<string> | string | undefined
  readonly consumer?: string | undefined
}

export const templateFields = ["sha256", "key", "oid"] as const
export const defaultTemplate = "{sha256}"
export const defaultSha256Column = "sha256"

/** Checks a key template: only known `{field}`s, balanced braces, at least one field, no leading "/". */
export const validateTemplate = (template: string): Effect.Effect<string, SettingsError> =>
  Effect.suspend(() => {
    const fail = (problem: string) => Effect.fail(new SettingsError({ setting: "--key-template", problem }))
    if (template.trim() === "") return fail("is empty")
    const stripped = template.replace(/\{([^{}]*)\}/g, (_, name: string) => (templateFields.includes(name as never) ? "" : `\u0000${name}`))
    const unknown = /\u0000([^\u0000]*)/.exec(stripped)
    if (unknown !== null) return fail(`{${unknown[1]}} is not a field (use ${templateFields.map((f) => `{${f}}`).join(", ")})`)
    if (/[{}]/.test(stripped)) return fail(`${JSON.stringify(template)} has an unbalanced brace`)
    if (!/\{(sha256|key|oid)\}/.test(template)) return fail("names no field: every object would get the same key")
    if (template.startsWith("/")) return fail("must not start with /")
    return Effect.succeed(template)
  })

/** Fills a key template. `key` parts of a composite key are joined by "/". */
export const fillTemplate = (
  template: string,
  values: { readonly sha256: string; readonly key: ReadonlyArray<string>; readonly oid: number | null }
): string =>
  template.replace(/\{(sha256|key|oid)\}/g, (_, name: string) =>
    name === "sha256" ? values.sha256 : name === "key" ? values.key.join("/") : String(values.oid ?? "null"))

export const parseShard = (value: string | undefined): Effect.Effect<Shard | undefined, SettingsError> =>
  Effect.suspend(() => {
    if (value === undefined || value.trim() === "") return Effect.succeed(undefined)
    const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(value)
    if (m === null) return Effect.fail(new SettingsError({ setting: "--shard", problem: `${JSON.stringify(value)} is not i/n (e.g. 0/3)` }))
    const index = Number(m[1])
    const count = Number(m[2])
    if (count < 1 || count > 1_000_000) return Effect.fail(new SettingsError({ setting: "--shard", problem: `n must be between 1 and 1000000, not ${count}` }))
    if (index >= count) return Effect.fail(new SettingsError({ setting: "--shard", problem: `i must be below n (0 ≤ i < ${count}), not ${index}` }))
    return Effect.succeed({ index, count })
  })

const identifier = (setting: string, value: string | undefined, maxParts: number) =>
  Effect.suspend(() => {
    if (value === undefined || value.trim() === "") return Effect.fail(new SettingsError({ setting, problem: "is required with --profile table" }))
    const parsed = Identifier.parse(value)
    if (typeof parsed === "string") return Effect.fail(new SettingsError({ setting, problem: parsed }))
    if (parsed.length > maxParts) {
      return Effect.fail(new SettingsError({ setting, problem: `${JSON.stringify(value)} has ${parsed.length} parts, at most ${maxParts} allowed` }))
    }
    return Effect.succeed(parsed)
  })

const column = (setting: string, value: string | undefined) => Effect.map(identifier(setting, value, 1), (parts) => parts[0]!)

const tableOnly = ["table", "oidColumn", "keyColumns", "mimeColumn", "sizeColumn", "sha256Column", "keyTemplate"] as const
const relstorageOnly = ["blobThreshold", "s3Prefix", "destPgUrl", "consumer"] as const
const flagName: Record<typeof tableOnly[number], string> = {
  table: "--table",
  oidColumn: "--oid-column",
  keyColumns: "--key-column",
  mimeColumn: "--mime-column",
  sizeColumn: "--size-column",
  sha256Column: "--sha256-column",
  keyTemplate: "--key-template"
}
const relstorageFlag: Record<typeof relstorageOnly[number], string> = {
  blobThreshold: "--blob-threshold",
  s3Prefix: "--s3-prefix",
  destPgUrl: "--dest-pg-url",
  consumer: "--for"
}

/** Validates the profile flags; the table flags are refused with another profile rather than ignored. */
export const validate = (input: ProfileInput): Effect.Effect<{ readonly profile: Profile; readonly shard: Shard | undefined }, SettingsError> =>
  Effect.gen(function*() {
    const name = input.profile ?? "nice2"
    if (!profiles.includes(name as ProfileName)) {
      return yield* new SettingsError({ setting: "--profile", problem: `${JSON.stringify(name)} is not one of ${profiles.join(", ")}` })
    }
    const shard = yield* parseShard(input.shard)
    if (name !== "relstorage") {
      for (const field of relstorageOnly) {
        if (input[field] !== undefined) {
          return yield* new SettingsError({ setting: relstorageFlag[field], problem: "is only used with --profile relstorage" })
        }
      }
    }
    if (name === "nice2" || name === "relstorage") {
      for (const field of tableOnly) {
        const v = input[field]
        if (v !== undefined && (!Array.isArray(v) || v.length > 0)) {
          return yield* new SettingsError({ setting: flagName[field], problem: "is only used with --profile table" })
        }
      }
      if (name === "nice2") return { profile: nice2, shard }
      const blobThreshold = input.blobThreshold ?? defaultBlobThreshold
      if (!Number.isSafeInteger(blobThreshold) || blobThreshold < 0) {
        return yield* new SettingsError({ setting: "--blob-threshold", problem: `${blobThreshold} is not a byte count (0 or more)` })
      }
      const prefix = input.s3Prefix?.trim().replace(/^\/+|\/+$/g, "")
      if (prefix !== undefined && /[{}\\]/.test(prefix)) {
        return yield* new SettingsError({ setting: "--s3-prefix", problem: `${JSON.stringify(input.s3Prefix)} contains {, } or \\` })
      }
      const dest = input.destPgUrl === undefined ? undefined : Redacted.isRedacted(input.destPgUrl) ? input.destPgUrl : Redacted.make(input.destPgUrl)
      if (dest !== undefined) {
        if (Redacted.value(dest).trim() === "") {
          return yield* new SettingsError({ setting: "--dest-pg-url", problem: "is empty (leave it out for the --pg-url database)" })
        }
        try {
          // libpq's forms, the PG* variables as defaults; never echo the value: it carries a password
          ConnInfo.validate(Redacted.value(dest), process.env)
        } catch (e) {
          return yield* new SettingsError({
            setting: "--dest-pg-url",
            problem: e instanceof ConnInfo.ConnInfoError ? e.problem : String(e)
          })
        }
      }
      const consumer = input.consumer
      if (consumer !== undefined && !consumers.includes(consumer as never)) {
        return yield* new SettingsError({ setting: "--for", problem: `${JSON.stringify(consumer)} is not one of ${consumers.join(", ")}` })
      }
      if (consumer === "zodb-pgjsonb" && dest === undefined) {
        return yield* new SettingsError({
          setting: "--for zodb-pgjsonb",
          problem: "needs --dest-pg-url (the zodb-pgjsonb database): without it blob_state goes into the RelStorage database, " +
            "next to RelStorage's object_state, where zodb-pgjsonb's schema cannot be installed. For a whole migration " +
            "(objects, transactions and blobs) into zodb-pgjsonb use zodb-convert"
        })
      }
      return {
        profile: {
          _tag: "relstorage",
          blobThreshold,
          s3Prefix: prefix === "" ? undefined : prefix,
          destPgUrl: dest,
          consumer: consumer as RelStorageProfile["consumer"]
        } satisfies RelStorageProfile,
        shard
      }
    }
    const table = yield* identifier("--table", input.table, 2)
    const oidColumn = yield* column("--oid-column", input.oidColumn)
    const keys = input.keyColumns ?? []
    if (keys.length === 0) return yield* new SettingsError({ setting: "--key-column", problem: "is required with --profile table (repeat it for a composite key)" })
    const keyColumns: Array<string> = []
    for (const k of keys) keyColumns.push(yield* column("--key-column", k))
    if (new Set(keyColumns).size !== keyColumns.length) return yield* new SettingsError({ setting: "--key-column", problem: "names a column twice" })
    const mimeColumn = input.mimeColumn === undefined ? undefined : yield* column("--mime-column", input.mimeColumn)
    const sizeColumn = input.sizeColumn === undefined ? undefined : yield* column("--size-column", input.sizeColumn)
    const sha256Column = yield* column("--sha256-column", input.sha256Column ?? defaultSha256Column)
    if (keyColumns.includes(sha256Column) || sha256Column === oidColumn) {
      return yield* new SettingsError({ setting: "--sha256-column", problem: `${sha256Column} is already the key or oid column` })
    }
    const keyTemplate = yield* validateTemplate(input.keyTemplate ?? defaultTemplate)
    return {
      profile: { _tag: "table", table, oidColumn, keyColumns, mimeColumn, sizeColumn, sha256Column, keyTemplate } satisfies TableProfile,
      shard
    }
  })

/** The name runs lock and watermark under: the table, and the shard when there is one. */
export const shardSuffix = (shard: Shard | undefined): string => (shard === undefined ? "" : ` shard ${shard.index}/${shard.count}`)
