/**
 * The storages of a zodb-convert run, from ZConfig files (ZConfig.ts reads the syntax):
 *
 * - a convert config with the source and the destination, in either form the Python tools use:
 *   `<source> <filestorage> … </filestorage> </source>` (zodb-pgjsonb's guide) or a storage section named
 *   for its role, `<filestorage source> … </filestorage>` (zodb-convert's README, its ZConfig schema);
 * - the `<zodb_db NAME>` section of a zope.conf (`--source-zope-conf FILE --source-db NAME`, and
 *   `--dest-…`), as zodb-convert's `open_storage_from_zope_conf` picks it.
 *
 * Sources: `<filestorage>` (`path`, `blob-dir`), also wrapped in `<blobstorage>` (its `blob-dir`), and
 * `<relstorage>` with `<postgresql>` (`dsn`; `keep-history`, `shared-blob-dir`, `blob-dir`). Destination:
 * zodb-pgjsonb's `<pgjsonb>`. Every key of those sections' ZConfig schemas (ZODB's, RelStorage's and
 * zodb-pgjsonb's component.xml) is accepted and its datatype checked; the ones that do not matter to a
 * conversion are listed in `ignored` with the reason. Anything else is a `ZConfigError` (exit 2) naming
 * file, line and key, never a value of a secret key.
 *
 * Paths are what ZConfig makes of them: `~` expanded, relative to the working directory (not to the
 * config file: ZConfig's existing-dirpath does not resolve them); they come out absolute. The source
 * file and blob directory must exist: unlike ZODB, which would create an empty Data.fs for a mistyped path.
 */
import { Effect, Redacted } from "effect"
import * as NodeFs from "node:fs"
import * as NodeOs from "node:os"
import * as NodePath from "node:path"
import { closest } from "../domain/Closest.ts"
import * as ZConfig from "./ZConfig.ts"
import { type Key, type Position, type Section, ZConfigError } from "./ZConfig.ts"

export interface FileStorageSource {
  readonly kind: "filestorage"
  /** the Data.fs, absolute */
  readonly path: string
  readonly blobDir: string | undefined
}

export interface RelStorageSource {
  readonly kind: "relstorage"
  /** libpq key=value or URI, as `<postgresql>` gives it ("" = libpq's defaults from the environment) */
  readonly dsn: Redacted.Redacted<string>
  /** where the dsn is set, for messages: `dsn of <postgresql> at convert.cfg:7` */
  readonly dsnSetting?: string | undefined
  /** RelStorage's keep-history (default true): history-preserving schema */
  readonly keepHistory: boolean
  /** blobs in a shared directory instead of the database (RelStorage's shared-blob-dir, deprecated) */
  readonly sharedBlobDir: boolean
  /** with sharedBlobDir, where the blobs are; otherwise only RelStorage's local cache, and undefined here */
  readonly blobDir: string | undefined
}

export type Source = FileStorageSource | RelStorageSource

export interface S3Settings {
  readonly bucket: string
  /** "" for none */
  readonly prefix: string
  readonly endpointUrl: string | undefined
  readonly region: string | undefined
  /** undefined: the SDK's credential chain */
  readonly accessKey: Redacted.Redacted<string> | undefined
  readonly secretKey: Redacted.Redacted<string> | undefined
  readonly useSsl: boolean
}

export interface PgJsonbDestination {
  readonly kind: "pgjsonb"
  readonly dsn: Redacted.Redacted<string>
  /** where the dsn is set, for messages: `dsn of <pgjsonb> at convert.cfg:5` */
  readonly dsnSetting?: string | undefined
  readonly historyPreserving: boolean
  /** bytes; blobs of at least this size go to S3 when S3 is configured (zodb-pgjsonb default 100KB) */
  readonly blobThreshold: number
  readonly s3: S3Settings | undefined
  /** zodb-pgjsonb's pool-max-size (default 10) */
  readonly poolMaxSize: number
  /** seconds to wait for a pool connection (default 30) */
  readonly poolTimeoutSeconds: number
  /** where zodb-pgjsonb stages blob files (blob-temp-dir); undefined: a temp directory */
  readonly blobTempDir: string | undefined
}

export type Destination = PgJsonbDestination

/** A key that was accepted but does not change the conversion. */
export interface Ignored {
  readonly at: Position
  /** e.g. "<filestorage>" */
  readonly section: string
  readonly key: string
  readonly reason: string
}

export interface Storages {
  readonly source: Source | undefined
  readonly destination: Destination | undefined
  readonly ignored: ReadonlyArray<Ignored>
}

export type Role = "source" | "destination"

// ---------------------------------------------------------------------------------------------------
// datatypes (ZConfig's datatypes.py)

type Datatype = "string" | "boolean" | "integer" | "float" | "byte-size" | "time-interval" | "path"

interface KeySpec {
  readonly type: Datatype
  /** why the key does not matter to a conversion; undefined: it is used */
  readonly ignored?: string
  /** its value is never shown */
  readonly secret?: boolean
  /** ZConfig multikey: may be given more than once */
  readonly multi?: boolean
}

/** Python int(): optional sign, digits with single underscores between them, surrounding whitespace. */
const pythonInt = /^\s*[+-]?\d+(?:_\d+)*\s*$/
const pythonFloat = /^\s*[+-]?(?:(?:\d+(?:_\d+)*)?\.?\d+(?:_\d+)*(?:[eE][+-]?\d+)?|\d+\.|inf|infinity|nan)\s*$/i

const suffixed = (value: string, units: Record<string, number>): number | undefined => {
  const v = value.toLowerCase()
  const width = Object.keys(units)[0]!.length
  const unit = units[v.slice(-width)]
  const digits = unit === undefined ? v : v.slice(0, -width)
  if (!pythonInt.test(digits)) return undefined
  return Number(digits.replaceAll("_", "").trim()) * (unit ?? 1)
}

/** ZConfig's byte-size: an integer, optionally with KB, MB or GB (powers of 1024), case-insensitive. */
export const byteSize = (value: string): number | undefined =>
  suffixed(value, { kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 })

/** ZConfig's time-interval: an integer of seconds, optionally with s, m, h or d. */
export const timeInterval = (value: string): number | undefined =>
  suffixed(value, { s: 1, m: 60, h: 3600, d: 86400 })

/** ZConfig's boolean: yes/true/on or no/false/off, case-insensitive. */
export const boolean = (value: string): boolean | undefined => {
  const v = value.toLowerCase()
  return ["yes", "true", "on"].includes(v) ? true : ["no", "false", "off"].includes(v) ? false : undefined
}

const expected: Record<Datatype, string> = {
  string: "text",
  boolean: "a boolean (true/false, yes/no, on/off)",
  integer: "an integer",
  float: "a number",
  "byte-size": "a byte size (an integer, optionally with KB, MB or GB, e.g. 100KB)",
  "time-interval": "a time interval (an integer, optionally with s, m, h or d)",
  path: "a path"
}

const valid = (type: Datatype, value: string): boolean => {
  switch (type) {
    case "boolean":
      return boolean(value) !== undefined
    case "integer":
      return pythonInt.test(value)
    case "float":
      return pythonFloat.test(value)
    case "byte-size":
      return byteSize(value) !== undefined
    case "time-interval":
      return timeInterval(value) !== undefined
    default:
      return true
  }
}

// ---------------------------------------------------------------------------------------------------
// the schemas (component.xml of ZODB, RelStorage, zodb-pgjsonb), as far as a conversion reads them

const S = (type: Datatype, ignored?: string, extra: Partial<KeySpec> = {}): KeySpec =>
  ignored === undefined ? { type, ...extra } : { type, ignored, ...extra }

const onlyRead = "the source is only read"
const packing = "applies to packing, which a conversion does not do"

const fileStorageKeys: Record<string, KeySpec> = {
  path: S("path"),
  "blob-dir": S("path"),
  create: S("boolean"),
  "read-only": S("boolean", onlyRead),
  quota: S("byte-size", "limits the file's growth; the source is only read"),
  packer: S("string", packing),
  "pack-gc": S("boolean", packing),
  "pack-keep-old": S("boolean", packing)
}

const blobStorageKeys: Record<string, KeySpec> = {
  "blob-dir": S("path")
}

const relStorageCache = "a cache of a running RelStorage; the conversion reads the database"
const relStorageKeys: Record<string, KeySpec> = {
  name: S("string", "the storage's display name"),
  "read-only": S("boolean", onlyRead),
  "blob-dir": S("path"),
  "shared-blob-dir": S("boolean"),
  "blob-cache-size": S("byte-size", relStorageCache),
  "blob-cache-size-check": S("integer", relStorageCache),
  "blob-cache-size-check-external": S("boolean", relStorageCache),
  "blob-chunk-size": S("byte-size", "the chunk size of writing blobs; reading takes each blob whole from its large object"),
  "keep-history": S("boolean"),
  "replica-conf": S("string", "replicas are not used: the conversion reads the database the dsn names"),
  "ro-replica-conf": S("string", "replicas are not used: the conversion reads the database the dsn names"),
  "replica-timeout": S("float", "replicas are not used"),
  revert_when_stale: S("boolean", "replicas are not used"),
  "poll-interval": S("float", relStorageCache),
  "pack-gc": S("boolean", packing),
  "pack-prepack-only": S("boolean", packing),
  "pack-skip-prepack": S("boolean", packing),
  "pack-batch-timeout": S("float", packing),
  "pack-commit-busy-delay": S("float", packing),
  "cache-servers": S("string", relStorageCache),
  "cache-module-name": S("string", relStorageCache),
  "cache-prefix": S("string", relStorageCache),
  "cache-local-mb": S("integer", relStorageCache),
  "cache-local-storage": S("string", relStorageCache),
  "cache-local-dir": S("string", relStorageCache),
  "cache-local-dir-count": S("integer", relStorageCache),
  "cache-local-dir-read-count": S("integer", relStorageCache),
  "cache-local-dir-compress": S("boolean", relStorageCache),
  "cache-local-dir-write-max-size": S("byte-size", relStorageCache),
  "cache-local-object-max": S("byte-size", relStorageCache),
  "cache-local-compression": S("string", relStorageCache),
  "cache-delta-size-limit": S("integer", relStorageCache),
  "commit-lock-timeout": S("integer", "the source is only read, no commit lock is taken"),
  "commit-lock-id": S("integer", "the source is only read, no commit lock is taken"),
  "create-schema": S("boolean", "the source's schema is read, never created")
}

const postgresqlKeys: Record<string, KeySpec> = {
  driver: S("string", "the conversion has its own PostgreSQL driver"),
  dsn: S("string", undefined, { secret: true })
}

const pgjsonbCache = "a cache of a running zodb-pgjsonb storage; a conversion only writes"
const pgjsonbKeys: Record<string, KeySpec> = {
  dsn: S("string", undefined, { secret: true }),
  name: S("string", "the storage's display name"),
  "history-preserving": S("boolean"),
  "blob-temp-dir": S("path"),
  "cache-local-mb": S("integer", pgjsonbCache),
  "cache-shared-mb": S("integer", pgjsonbCache),
  "cache-per-connection-mb": S("integer", pgjsonbCache),
  "pool-size": S("integer", "the pool's minimum size; connections open as workers need them"),
  "pool-max-size": S("integer"),
  "pool-timeout": S("float"),
  "cache-warm-pct": S("integer", pgjsonbCache),
  "cache-warm-decay": S("float", pgjsonbCache),
  "cache-warm-delay": S("integer", pgjsonbCache),
  "cache-warm-jitter": S("integer", pgjsonbCache),
  "cache-warm-concurrency": S("integer", pgjsonbCache),
  "cache-warm-wait-max": S("integer", pgjsonbCache),
  "cache-warm-batch-size": S("integer", pgjsonbCache),
  "cache-warm-batch-pause": S("float", pgjsonbCache),
  "blob-threshold": S("byte-size"),
  "s3-bucket-name": S("string"),
  "s3-prefix": S("string"),
  "s3-endpoint-url": S("string"),
  "s3-region": S("string"),
  "s3-access-key": S("string", undefined, { secret: true }),
  "s3-secret-key": S("string", undefined, { secret: true }),
  "s3-use-ssl": S("boolean"),
  "blob-cache-dir": S("string", pgjsonbCache),
  "blob-cache-size": S("byte-size", pgjsonbCache)
}

const database = "a setting of the database, not of its storage"
/** ZODB's <zodb> keys, and the ones Zope's <zodb_db> adds (zodb-convert strips those). */
const zodbDbKeys: Record<string, KeySpec> = {
  "cache-size": S("integer", database),
  "cache-size-bytes": S("byte-size", database),
  "large-record-size": S("byte-size", database),
  "pool-size": S("integer", database),
  "pool-timeout": S("time-interval", database),
  "historical-pool-size": S("integer", database),
  "historical-cache-size": S("integer", database),
  "historical-cache-size-bytes": S("byte-size", database),
  "historical-timeout": S("time-interval", database),
  "database-name": S("string", database),
  "allow-implicit-cross-references": S("boolean", database),
  "class-factory": S("string", database),
  "mount-point": S("string", "Zope's mount point of the database", { multi: true }),
  "connection-class": S("string", database),
  "container-class": S("string", database)
}

/** Storage section types of ZODB and its usual add-ons that a conversion cannot read or write. */
const otherStorages = [
  "mappingstorage", "demostorage", "zeoclient", "temporarystorage", "fullstorage", "minimalstorage",
  "zlibstorage", "beforestorage", "s3blobstorage", "cachingblobstorage", "dbmstorage", "clientstorage"
]
const storages = ["filestorage", "blobstorage", "relstorage", "pgjsonb"]
const adapters = ["postgresql", "mysql", "oracle", "sqlite3"]

// ---------------------------------------------------------------------------------------------------
// reading sections

const fail = (at: Position, problem: string) => new ZConfigError({ file: at.file, line: at.line, problem })

/** " (did you mean x?)" for the closest candidate, if close enough. */
export const didYouMean = (name: string, candidates: ReadonlyArray<string>): string => {
  const best = closest(name, candidates, { normalize: (s) => s.toLowerCase().replaceAll("_", "-"), least: 2 })
  return best === undefined ? "" : ` (did you mean ${best}?)`
}

const label = (s: Section) => `<${s.type}${s.name === undefined ? "" : ` ${s.name}`}>`

interface Ctx {
  readonly cwd: string
  readonly ignored: Array<Ignored>
}

/** A section's keys, checked against its schema: unknown keys, repeated keys, datatypes. */
const keysOf = (s: Section, spec: Record<string, KeySpec>, ctx: Ctx): Map<string, Key> => {
  const seen = new Map<string, Key>()
  for (const k of s.keys) {
    const ks = spec[k.name]
    if (ks === undefined) {
      throw fail(k.at, `unknown key ${JSON.stringify(k.name)} in <${s.type}>${didYouMean(k.name, Object.keys(spec))}`)
    }
    const before = seen.get(k.name)
    if (before !== undefined && ks.multi !== true) {
      throw fail(k.at, `${k.name} is given twice in <${s.type}> (first at line ${before.at.line}${before.at.file === k.at.file ? "" : ` of ${before.at.file}`})`)
    }
    if (!valid(ks.type, k.value)) {
      const shown = ks.secret === true ? "" : ` ${JSON.stringify(k.value.length > 40 ? `${k.value.slice(0, 40)}…` : k.value)}`
      throw fail(k.at, `${k.name} in <${s.type}>:${shown} is not ${expected[ks.type]}`)
    }
    if (ks.ignored !== undefined) ctx.ignored.push({ at: k.at, section: `<${s.type}>`, key: k.name, reason: ks.ignored })
    seen.set(k.name, k)
  }
  return seen
}

const noSections = (s: Section) => {
  const child = s.sections[0]
  if (child !== undefined) throw fail(child.at, `${label(child)} cannot be inside <${s.type}>`)
}

const expandUser = (p: string) => p === "~" || p.startsWith("~/") ? NodeOs.homedir() + p.slice(1) : p

/** A path key's value: `~` expanded, relative to the working directory (as ZConfig leaves it), absolute. */
const pathOf = (k: Key, ctx: Ctx) => NodePath.resolve(ctx.cwd, expandUser(k.value))

const existing = (k: Key, ctx: Ctx, kind: "file" | "directory", section: string): string => {
  const path = pathOf(k, ctx)
  let stat: NodeFs.Stats
  try {
    stat = NodeFs.statSync(path)
  } catch (e) {
    throw fail(k.at, `${k.name} in <${section}>: ${path}: ${ZConfig.fileProblem(e)}`)
  }
  if (kind === "file" && !stat.isFile()) throw fail(k.at, `${k.name} in <${section}>: ${path} is not a file`)
  if (kind === "directory" && !stat.isDirectory()) throw fail(k.at, `${k.name} in <${section}>: ${path} is not a directory`)
  return path
}

const required = (s: Section, keys: Map<string, Key>, name: string): Key => {
  const k = keys.get(name)
  if (k === undefined) throw fail(s.at, `<${s.type}> needs the key ${name}`)
  return k
}

const fileStorage = (s: Section, ctx: Ctx, outerBlobDir: Key | undefined): FileStorageSource => {
  noSections(s)
  const keys = keysOf(s, fileStorageKeys, ctx)
  const create = keys.get("create")
  if (create !== undefined && boolean(create.value) === true) {
    throw fail(create.at, "create true in <filestorage> would have ZODB empty the source file; remove it (a conversion only reads)")
  }
  const own = keys.get("blob-dir")
  if (own !== undefined && outerBlobDir !== undefined && own.value !== "") {
    throw fail(own.at, `blob-dir is given both here and in the <blobstorage> around it (line ${outerBlobDir.at.line})`)
  }
  const blobKey = outerBlobDir ?? own
  return {
    kind: "filestorage",
    path: existing(required(s, keys, "path"), ctx, "file", "filestorage"),
    // ZODB: an empty blob-dir means no blob support
    blobDir: blobKey === undefined || blobKey.value === "" ? undefined : existing(blobKey, ctx, "directory", blobKey === outerBlobDir ? "blobstorage" : "filestorage")
  }
}

const blobStorage = (s: Section, ctx: Ctx): FileStorageSource => {
  const keys = keysOf(s, blobStorageKeys, ctx)
  const blobDir = required(s, keys, "blob-dir")
  const inner = s.sections
  if (inner.length !== 1) {
    throw fail(inner[1]?.at ?? s.at, `<blobstorage> must hold exactly one storage section (a <filestorage>), it holds ${inner.length}`)
  }
  const base = inner[0]!
  if (base.type !== "filestorage") {
    throw fail(base.at, `${label(base)} inside <blobstorage>: only a <filestorage> can be read there`)
  }
  return fileStorage(base, ctx, blobDir)
}

const relStorage = (s: Section, ctx: Ctx): RelStorageSource => {
  const keys = keysOf(s, relStorageKeys, ctx)
  const adapter = s.sections
  if (adapter.length !== 1) {
    throw fail(adapter[1]?.at ?? s.at, `<relstorage> must hold exactly one database section (<postgresql>), it holds ${adapter.length}`)
  }
  const db = adapter[0]!
  if (db.type !== "postgresql") {
    const problem = adapters.includes(db.type)
      ? `${label(db)}: only a RelStorage on PostgreSQL can be read (<postgresql>)`
      : `unknown section ${label(db)} in <relstorage>${didYouMean(db.type, adapters)}`
    throw fail(db.at, problem)
  }
  noSections(db)
  const dbKeys = keysOf(db, postgresqlKeys, ctx)
  const shared = boolean(keys.get("shared-blob-dir")?.value ?? "false")!
  const blobDir = keys.get("blob-dir")
  if (shared && (blobDir === undefined || blobDir.value === "")) {
    throw fail(s.at, "<relstorage> with shared-blob-dir true needs blob-dir: the blobs are there, not in the database")
  }
  if (!shared && blobDir !== undefined) {
    ctx.ignored.push({
      at: blobDir.at,
      section: "<relstorage>",
      key: "blob-dir",
      reason: "without shared-blob-dir it is RelStorage's local cache; the blobs are read from the database"
    })
  }
  const dsnKey = dbKeys.get("dsn")
  return {
    kind: "relstorage",
    dsn: Redacted.make(dsnKey?.value ?? ""),
    dsnSetting: dsnKey === undefined
      ? `<postgresql> at ${db.at.file}:${db.at.line} (no dsn: the PG* variables)`
      : `dsn of <postgresql> at ${dsnKey.at.file}:${dsnKey.at.line}`,
    keepHistory: boolean(keys.get("keep-history")?.value ?? "true")!,
    sharedBlobDir: shared,
    blobDir: shared ? existing(blobDir!, ctx, "directory", "relstorage") : undefined
  }
}

const pgjsonb = (s: Section, ctx: Ctx): PgJsonbDestination => {
  noSections(s)
  const keys = keysOf(s, pgjsonbKeys, ctx)
  const value = (name: string) => keys.get(name)?.value
  const dsnKey = required(s, keys, "dsn")
  const dsn = dsnKey.value.trim()
  // the checks of zodb-pgjsonb's PGJsonbStorageFactory
  if (dsn === "") throw fail(dsnKey.at, "dsn in <pgjsonb> is empty")
  if (!(dsn.includes("=") || dsn.startsWith("postgresql://") || dsn.startsWith("postgres://"))) {
    throw fail(dsnKey.at, "dsn in <pgjsonb> is neither libpq key=value (dbname=zodb host=…) nor a postgresql:// URI")
  }
  const threshold = keys.get("blob-threshold")
  const blobThreshold = byteSize(threshold?.value ?? "100KB")!
  if (blobThreshold < 0) throw fail(threshold!.at, "blob-threshold in <pgjsonb> must be 0 or more")
  const poolKey = keys.get("pool-max-size")
  const poolMaxSize = Number((poolKey?.value ?? "10").replaceAll("_", ""))
  if (poolMaxSize < 1) throw fail(poolKey!.at, "pool-max-size in <pgjsonb> must be at least 1")
  const timeoutKey = keys.get("pool-timeout")
  const poolTimeoutSeconds = Number(timeoutKey?.value ?? "30")
  if (!(poolTimeoutSeconds > 0)) throw fail(timeoutKey!.at, "pool-timeout in <pgjsonb> must be a positive number of seconds")
  const bucket = value("s3-bucket-name")
  const s3Keys = ["s3-prefix", "s3-endpoint-url", "s3-region", "s3-access-key", "s3-secret-key", "s3-use-ssl"]
  if (bucket === undefined || bucket === "") {
    for (const name of s3Keys) {
      const k = keys.get(name)
      if (k !== undefined) {
        ctx.ignored.push({ at: k.at, section: "<pgjsonb>", key: name, reason: "no s3-bucket-name: every blob is stored in PostgreSQL" })
      }
    }
  }
  const optional = (name: string) => {
    const v = value(name)
    return v === undefined || v === "" ? undefined : v
  }
  const secret = (name: string) => {
    const v = optional(name)
    return v === undefined ? undefined : Redacted.make(v)
  }
  const tempDir = keys.get("blob-temp-dir")
  return {
    kind: "pgjsonb",
    dsn: Redacted.make(dsnKey.value),
    dsnSetting: `dsn of <pgjsonb> at ${dsnKey.at.file}:${dsnKey.at.line}`,
    historyPreserving: boolean(value("history-preserving") ?? "false")!,
    blobThreshold,
    s3: bucket === undefined || bucket === ""
      ? undefined
      : {
        bucket,
        prefix: value("s3-prefix") ?? "",
        endpointUrl: optional("s3-endpoint-url"),
        region: optional("s3-region"),
        accessKey: secret("s3-access-key"),
        secretKey: secret("s3-secret-key"),
        useSsl: boolean(value("s3-use-ssl") ?? "true")!
      },
    poolMaxSize,
    poolTimeoutSeconds,
    blobTempDir: tempDir === undefined || tempDir.value === "" ? undefined : pathOf(tempDir, ctx)
  }
}

type Storage = { readonly role: "source"; readonly value: Source } | { readonly role: "destination"; readonly value: Destination }

/** A storage section for `role`. */
const storage = (s: Section, role: Role, ctx: Ctx): Storage => {
  if (role === "source") {
    if (s.type === "filestorage") return { role, value: fileStorage(s, ctx, undefined) }
    if (s.type === "blobstorage") return { role, value: blobStorage(s, ctx) }
    if (s.type === "relstorage") return { role, value: relStorage(s, ctx) }
  } else if (s.type === "pgjsonb") {
    return { role, value: pgjsonb(s, ctx) }
  }
  const supported = role === "source"
    ? "zodb-convert reads a <filestorage> (also inside <blobstorage>) or a <relstorage> with <postgresql>"
    : "zodb-convert writes to a <pgjsonb> (%import zodb_pgjsonb)"
  if (storages.includes(s.type) || otherStorages.includes(s.type)) throw fail(s.at, `${label(s)} cannot be the ${role}: ${supported}`)
  throw fail(s.at, `unknown storage section ${label(s)}${didYouMean(s.type, storages)}: ${supported}`)
}

const isStorageType = (type: string) => storages.includes(type) || otherStorages.includes(type)

/** The single storage section inside a wrapper (`<source>`, `<destination>`, `<zodb_db>`). */
const onlyStorage = (s: Section, role: Role, ctx: Ctx): Storage => {
  if (s.sections.length === 0) throw fail(s.at, `${label(s)} holds no storage section`)
  if (s.sections.length > 1) {
    throw fail(s.sections[1]!.at, `${label(s)} holds more than one storage section (the first is at line ${s.sections[0]!.at.line})`)
  }
  return storage(s.sections[0]!, role, ctx)
}

const roles: ReadonlyArray<Role> = ["source", "destination"]

/** The storages of a convert config document; either may be missing (zope.conf options can give it). */
export const storagesOf = (doc: ZConfig.Document, options: { readonly cwd?: string } = {}): Storages => {
  const ctx: Ctx = { cwd: options.cwd ?? process.cwd(), ignored: [] }
  const found: Partial<Record<Role, { readonly storage: Storage; readonly at: Position }>> = {}
  const key = doc.root.keys[0]
  if (key !== undefined) throw fail(key.at, `key ${JSON.stringify(key.name)} outside any section (keys belong in a storage section)`)
  for (const s of doc.root.sections) {
    let got: Storage
    if (s.type === "source" || s.type === "destination") {
      if (s.keys.length > 0) throw fail(s.keys[0]!.at, `unknown key ${JSON.stringify(s.keys[0]!.name)} in <${s.type}> (it holds only a storage section)`)
      got = onlyStorage(s, s.type, ctx)
    } else if (isStorageType(s.type)) {
      const role = roles.find((r) => r === s.name)
      if (role === undefined) {
        throw fail(s.at, `${label(s)} at the top level must be named for its role (<${s.type} source> or <${s.type} destination>), or be inside <source> or <destination>`)
      }
      got = storage(s, role, ctx)
    } else {
      throw fail(s.at, `unknown section ${label(s)}${didYouMean(s.type, [...roles, ...storages])}: expected <source>, <destination>, or a storage section named source or destination`)
    }
    const before = found[got.role]
    if (before !== undefined) {
      throw fail(s.at, `a second ${got.role} (the first is at line ${before.at.line}${before.at.file === s.at.file ? "" : ` of ${before.at.file}`})`)
    }
    found[got.role] = { storage: got, at: s.at }
  }
  return {
    source: found.source?.storage.value as Source | undefined,
    destination: found.destination?.storage.value as Destination | undefined,
    ignored: ctx.ignored
  }
}

/** The storage of a zope.conf's `<zodb_db NAME>` (name case-insensitive, as ZConfig lowercases it). */
export const zopeConfStorage = (
  doc: ZConfig.Document,
  file: string,
  dbName: string,
  role: Role,
  options: { readonly cwd?: string } = {}
): { readonly storage: Source | Destination; readonly ignored: ReadonlyArray<Ignored> } => {
  const ctx: Ctx = { cwd: options.cwd ?? process.cwd(), ignored: [] }
  const dbs = doc.root.sections.filter((s) => s.type === "zodb_db")
  const wanted = dbName.toLowerCase()
  const matches = dbs.filter((s) => s.name === wanted)
  if (matches.length === 0) {
    const names = dbs.map((s) => s.name ?? "(unnamed)")
    throw new ZConfigError({
      file,
      line: undefined,
      problem: names.length === 0
        ? `no <zodb_db ${dbName}> section: the file has no <zodb_db> sections`
        : `no <zodb_db ${dbName}> section; it has ${names.map((n) => `<zodb_db ${n}>`).join(", ")}`
    })
  }
  if (matches.length > 1) throw fail(matches[1]!.at, `a second <zodb_db ${dbName}> (the first is at line ${matches[0]!.at.line})`)
  const db = matches[0]!
  keysOf(db, zodbDbKeys, ctx)
  return { storage: onlyStorage(db, role, ctx).value, ignored: ctx.ignored }
}

export interface LoadOptions {
  /** the convert config file (`zodb-convert FILE`) */
  readonly configFile?: string | undefined
  readonly sourceZopeConf?: string | undefined
  /** default "main" */
  readonly sourceDb?: string | undefined
  readonly destZopeConf?: string | undefined
  /** default "main" */
  readonly destDb?: string | undefined
  /** for relative paths (default process.cwd()) */
  readonly cwd?: string | undefined
  /** for $(NAME) (default process.env) */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** false: a missing source is fine (--upload-blobs needs only the destination) */
  readonly needSource?: boolean | undefined
}

export interface Resolved {
  readonly source: Source
  readonly destination: Destination
  readonly ignored: ReadonlyArray<Ignored>
}

/**
 * Source and destination from the config file and/or the zope.conf options, as zodb-convert's
 * `open_storages` combines them: each side given exactly once.
 */
export const load = (options: LoadOptions): Effect.Effect<Resolved, ZConfigError> =>
  Effect.gen(function*() {
    const parseOptions = options.env === undefined ? {} : { env: options.env }
    const cwd = options.cwd === undefined ? {} : { cwd: options.cwd }
    const ignored: Array<Ignored> = []
    let source: Source | undefined
    let destination: Destination | undefined
    const file = options.configFile
    if (file !== undefined) {
      const doc = yield* ZConfig.load(file, parseOptions)
      const got = yield* Effect.try({ try: () => storagesOf(doc, cwd), catch: asZConfigError })
      source = got.source
      destination = got.destination
      ignored.push(...got.ignored)
    }
    const fromZopeConf = (path: string, db: string | undefined, role: Role) =>
      Effect.gen(function*() {
        const doc = yield* ZConfig.load(path, parseOptions)
        const got = yield* Effect.try({ try: () => zopeConfStorage(doc, path, db ?? "main", role, cwd), catch: asZConfigError })
        ignored.push(...got.ignored)
        return got.storage
      })
    const twice = (role: Role, flag: string) =>
      new ZConfigError({ file, line: undefined, problem: `the ${role} is given both in this file and by ${flag}; give it once` })
    if (options.sourceZopeConf !== undefined) {
      if (source !== undefined) return yield* twice("source", "--source-zope-conf")
      source = (yield* fromZopeConf(options.sourceZopeConf, options.sourceDb, "source")) as Source
    }
    if (options.destZopeConf !== undefined) {
      if (destination !== undefined) return yield* twice("destination", "--dest-zope-conf")
      destination = (yield* fromZopeConf(options.destZopeConf, options.destDb, "destination")) as Destination
    }
    const missing = (role: Role, flag: string) =>
      new ZConfigError({
        file,
        line: undefined,
        problem: file === undefined
          ? `no ${role}: give a config file with <${role}>, or ${flag} FILE`
          : `no ${role}: the file has no <${role}> section (nor a storage section named ${role}), and ${flag} is not given`
      })
    if (source === undefined && options.needSource !== false) return yield* missing("source", "--source-zope-conf")
    if (destination === undefined) return yield* missing("destination", "--dest-zope-conf")
    return { source: source as Source, destination, ignored }
  })

const asZConfigError = (e: unknown): ZConfigError => {
  if (e instanceof ZConfigError) return e
  throw e
}
