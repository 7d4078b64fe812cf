// ZConfig files for zodb-convert: the guide's examples and zodb-convert's README forms, every key of the
// sections read, ZConfig's syntax (comments, %define/$NAME/$(ENV), %include, case-insensitivity, byte
// sizes), zope.conf's <zodb_db NAME>, and each error with its file and line (never a secret's value).
import { assert, describe, it } from "@effect/vitest"
import { Effect, Redacted, Result, Runtime } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as ConvertConfig from "../../src/zodb/ConvertConfig.ts"
import * as ZConfig from "../../src/zodb/ZConfig.ts"
import { scopedTempDir } from "../support/TempDir.ts"

/** A temp dir with a Data.fs and a blob directory, and helpers to write config files there. */
const workspace = Effect.gen(function*() {
  const dir = yield* scopedTempDir("zconfig-")
  const dataFs = NodePath.join(dir, "var", "Data.fs")
  const blobs = NodePath.join(dir, "var", "blobstorage")
  NodeFs.mkdirSync(blobs, { recursive: true })
  NodeFs.writeFileSync(dataFs, "FS30")
  const write = (name: string, text: string) => {
    const path = NodePath.join(dir, name)
    NodeFs.mkdirSync(NodePath.dirname(path), { recursive: true })
    NodeFs.writeFileSync(path, text)
    return path
  }
  const load = (text: string, options: Omit<ConvertConfig.LoadOptions, "configFile"> = {}) =>
    ConvertConfig.load({ configFile: write("zodb.conf", text), cwd: dir, ...options })
  /** the ZConfigError of loading `text` */
  const refused = (text: string, options: Omit<ConvertConfig.LoadOptions, "configFile"> = {}) =>
    Effect.map(Effect.result(load(text, options)), (r) => {
      if (Result.isSuccess(r)) assert.fail("expected a ZConfigError")
      return (r as Result.Failure<unknown, ZConfig.ZConfigError>).failure
    })
  return { dir, dataFs, blobs, write, load, refused }
})

const destination = `
<destination>
%import zodb_pgjsonb
<pgjsonb>
dsn dbname=zodb_new user=zodb host=localhost port=5432
</pgjsonb>
</destination>
`

describe("zodb-convert config: the guide's examples", () => {
  it.effect("From FileStorage (migrate.cfg of the guide, paths made real)", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const got = yield* w.load(`<source>
<filestorage>
path ${w.dataFs}
blob-dir ${w.blobs}
</filestorage>
</source>
<destination>
%import zodb_pgjsonb
<pgjsonb>
dsn dbname=zodb_new user=zodb host=localhost port=5432
</pgjsonb>
</destination>`)
      assert.deepStrictEqual(got.source, { kind: "filestorage", path: w.dataFs, blobDir: w.blobs })
      const d = got.destination
      assert.strictEqual(Redacted.value(d.dsn), "dbname=zodb_new user=zodb host=localhost port=5432")
      assert.deepInclude(d, {
        kind: "pgjsonb",
        historyPreserving: false,
        blobThreshold: 100 * 1024,
        s3: undefined,
        poolMaxSize: 10,
        poolTimeoutSeconds: 30,
        blobTempDir: undefined
      })
      assert.deepStrictEqual(got.ignored, [])
    }))

  it.effect("From RelStorage", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const got = yield* w.load(`<source>
<relstorage>
<postgresql>
dsn dbname=zodb_old user=zodb host=localhost
</postgresql>
</relstorage>
</source>${destination}`)
      const s = got.source
      assert.strictEqual(s.kind, "relstorage")
      if (s.kind === "relstorage") {
        assert.strictEqual(Redacted.value(s.dsn), "dbname=zodb_old user=zodb host=localhost")
        assert.deepInclude(s, { keepHistory: true, sharedBlobDir: false, blobDir: undefined })
      }
    }))

  it.effect("zodb-convert's README forms: <filestorage source>, <blobstorage source>, %import relstorage + <relstorage source>", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const dest = `<pgjsonb destination>\n  dsn postgresql://u@h/db\n</pgjsonb>\n`
      const a = yield* w.load(`<filestorage source>\n    path ${w.dataFs}\n    blob-dir ${w.blobs}\n</filestorage>\n\n${dest}`)
      assert.deepStrictEqual(a.source, { kind: "filestorage", path: w.dataFs, blobDir: w.blobs })
      assert.strictEqual(Redacted.value(a.destination.dsn), "postgresql://u@h/db")
      const b = yield* w.load(`<blobstorage source>
    blob-dir ${w.blobs}
    <filestorage>
        path ${w.dataFs}
    </filestorage>
</blobstorage>
${dest}`)
      assert.deepStrictEqual(b.source, { kind: "filestorage", path: w.dataFs, blobDir: w.blobs })
      const c = yield* w.load(`%import relstorage

<relstorage source>
    <postgresql>
        dsn dbname=zodb user=zodb
    </postgresql>
</relstorage>
${dest}`)
      assert.strictEqual(c.source.kind, "relstorage")
    }))
})

describe("zodb-convert config: every key", () => {
  it.effect("<pgjsonb>: every key of zodb-pgjsonb's component.xml; the ones a conversion does not use are listed with a reason", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const got = yield* w.load(`<filestorage source>
  path var/Data.fs
</filestorage>
<destination>
  <pgjsonb>
    dsn host=db dbname=zodb password=hunter2
    name my-storage
    history-preserving true
    blob-temp-dir var/tmp
    cache-local-mb 1
    cache-shared-mb 2
    cache-per-connection-mb 3
    pool-size 2
    pool-max-size 9
    pool-timeout 12.5
    cache-warm-pct 5
    cache-warm-decay 0.5
    cache-warm-delay 1
    cache-warm-jitter 1
    cache-warm-concurrency 1
    cache-warm-wait-max 1
    cache-warm-batch-size 1
    cache-warm-batch-pause 0.1
    blob-threshold 1MB
    s3-bucket-name zodb-blobs
    s3-prefix site1
    s3-endpoint-url http://127.0.0.1:9000
    s3-region eu-central-1
    s3-access-key AKIA123
    s3-secret-key wJalrXUtnFEMI/K7MDENG
    s3-use-ssl off
    blob-cache-dir var/cache
    blob-cache-size 2GB
  </pgjsonb>
</destination>`)
      const d = got.destination
      assert.deepInclude(d, {
        kind: "pgjsonb",
        historyPreserving: true,
        blobThreshold: 1024 * 1024,
        poolMaxSize: 9,
        poolTimeoutSeconds: 12.5,
        blobTempDir: NodePath.join(w.dir, "var", "tmp")
      })
      assert.deepInclude(d.s3!, {
        bucket: "zodb-blobs",
        prefix: "site1",
        endpointUrl: "http://127.0.0.1:9000",
        region: "eu-central-1",
        useSsl: false
      })
      assert.strictEqual(Redacted.value(d.s3!.accessKey!), "AKIA123")
      assert.strictEqual(Redacted.value(d.s3!.secretKey!), "wJalrXUtnFEMI/K7MDENG")
      assert.strictEqual(Redacted.value(d.dsn), "host=db dbname=zodb password=hunter2")
      assert.notInclude(String(d.dsn) + JSON.stringify(d.s3), "hunter2")
      assert.deepStrictEqual(got.ignored.map((i) => i.key), [
        "name", "cache-local-mb", "cache-shared-mb", "cache-per-connection-mb", "pool-size", "cache-warm-pct",
        "cache-warm-decay", "cache-warm-delay", "cache-warm-jitter", "cache-warm-concurrency", "cache-warm-wait-max",
        "cache-warm-batch-size", "cache-warm-batch-pause", "blob-cache-dir", "blob-cache-size"
      ])
      assert.deepStrictEqual(got.ignored[0], {
        at: { file: NodePath.join(w.dir, "zodb.conf"), line: 7 },
        section: "<pgjsonb>",
        key: "name",
        reason: "the storage's display name"
      })
    }))

  it.effect("<pgjsonb> S3 keys without s3-bucket-name are listed as ignored (all blobs go to PostgreSQL); s3-use-ssl defaults to true", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const src = `<filestorage source>\npath ${w.dataFs}\n</filestorage>\n`
      const none = yield* w.load(`${src}<pgjsonb destination>\ndsn a=b\ns3-region x\n</pgjsonb>`)
      assert.isUndefined(none.destination.s3)
      assert.deepStrictEqual(none.ignored.map((i) => [i.key, i.at.line]), [["s3-region", 6]])
      const some = yield* w.load(`${src}<pgjsonb destination>\ndsn a=b\ns3-bucket-name b\n</pgjsonb>`)
      assert.deepStrictEqual(some.destination.s3, {
        bucket: "b", prefix: "", endpointUrl: undefined, region: undefined, accessKey: undefined, secretKey: undefined, useSsl: true
      })
    }))

  it.effect("<filestorage>, <relstorage> and <postgresql>: every key of ZODB's and RelStorage's component.xml", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const fs = yield* w.load(`<filestorage source>
path ${w.dataFs}
blob-dir ${w.blobs}
create false
read-only true
quota 10GB
packer ZODB.FileStorage.packer.FileStoragePacker
pack-gc false
pack-keep-old no
</filestorage>
<pgjsonb destination>
dsn a=b
</pgjsonb>`)
      assert.deepStrictEqual(fs.ignored.map((i) => i.key), ["read-only", "quota", "packer", "pack-gc", "pack-keep-old"])
      const rsKeys = [
        "name main", "read-only true", "blob-dir var/blobstorage", "shared-blob-dir true", "blob-cache-size 1GB",
        "blob-cache-size-check 10", "blob-cache-size-check-external false", "blob-chunk-size 1MB", "keep-history false",
        "replica-conf /etc/replicas.conf", "ro-replica-conf /etc/ro.conf", "replica-timeout 600.0", "revert_when_stale false",
        "poll-interval 0", "pack-gc true", "pack-prepack-only false", "pack-skip-prepack false", "pack-batch-timeout 1.0",
        "pack-commit-busy-delay 5.0", "cache-servers localhost:11211", "cache-module-name relstorage.pylibmc_wrapper",
        "cache-prefix zodb", "cache-local-mb 10", "cache-local-storage relstorage.cache.lru_sqlite.SqlMapping",
        "cache-local-dir var/cache", "cache-local-dir-count 2", "cache-local-dir-read-count 1", "cache-local-dir-compress true",
        "cache-local-dir-write-max-size 10MB", "cache-local-object-max 16KB", "cache-local-compression zlib",
        "cache-delta-size-limit 100", "commit-lock-timeout 30", "commit-lock-id 0", "create-schema false"
      ]
      const rs = yield* w.load(`<relstorage source>
${rsKeys.join("\n")}
<postgresql>
driver psycopg2
dsn dbname=old password=secret
</postgresql>
</relstorage>
<pgjsonb destination>
dsn a=b
</pgjsonb>`)
      assert.deepInclude(rs.source, { kind: "relstorage", keepHistory: false, sharedBlobDir: true, blobDir: w.blobs })
      const used = ["blob-dir", "shared-blob-dir", "keep-history"]
      assert.deepStrictEqual(
        rs.ignored.map((i) => i.key),
        [...rsKeys.map((k) => k.split(" ")[0]!).filter((k) => !used.includes(k)), "driver"]
      )
      assert.isTrue(rs.ignored.every((i) => i.reason.length > 10))
    }))

  it.effect("<relstorage> without shared-blob-dir: blob-dir is RelStorage's cache and ignored; with it, blob-dir is required", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const rs = (body: string) => `<relstorage source>\n${body}\n<postgresql>\ndsn x=y\n</postgresql>\n</relstorage>\n<pgjsonb destination>\ndsn a=b\n</pgjsonb>`
      const cache = yield* w.load(rs("blob-dir /nonexistent/cache"))
      assert.deepInclude(cache.source, { sharedBlobDir: false, blobDir: undefined })
      assert.match(cache.ignored[0]!.reason, /local cache/)
      const e = yield* w.refused(rs("shared-blob-dir true"))
      assert.strictEqual(e.message, `${NodePath.join(w.dir, "zodb.conf")}:1: <relstorage> with shared-blob-dir true needs blob-dir: the blobs are there, not in the database`)
    }))
})

describe("ZConfig syntax", () => {
  it("byte sizes as ZConfig's byte-size: KB, MB, GB (1024), any case, plain integers", () => {
    const cases: Array<[string, number | undefined]> = [
      ["100KB", 102400], ["100kb", 102400], ["100Kb", 102400], ["1MB", 1048576], ["1gb", 1073741824], ["0", 0],
      ["123", 123], ["1_000", 1000], ["100 KB", 102400], ["+5", 5], ["-1KB", -1024],
      ["1.5MB", undefined], ["100KiB", undefined], ["KB", undefined], ["", undefined], ["1TB", undefined], ["1 000", undefined]
    ]
    for (const [text, value] of cases) assert.strictEqual(ConvertConfig.byteSize(text), value, text)
    assert.deepStrictEqual(["on", "YES", "True", "off", "no", "FALSE", "1", ""].map(ConvertConfig.boolean), [true, true, true, false, false, false, undefined, undefined])
  })

  it.effect("%define NAME value, $NAME, ${NAME}, $$ and $(ENV) in values; names case-insensitive; %include shares them", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      w.write("conf.d/dest.conf", `<pgjsonb destination>\n  dsn dbname=$DBNAME password=$(PGPASS)\n  s3-bucket-name \${Bucket}\n  s3-prefix price$$5\n</pgjsonb>\n`)
      const got = yield* w.load(`%define VAR ${w.dir}/var
%define dbname zodb
%define BUCKET blobs
%define bucket blobs
<filestorage source>
  path $var/Data.fs
  blob-dir \${VAR}/blobstorage
</filestorage>
%include conf.d/dest.conf
`, { env: { PGPASS: "s3cr3t" } })
      assert.deepStrictEqual(got.source, { kind: "filestorage", path: w.dataFs, blobDir: w.blobs })
      assert.strictEqual(Redacted.value(got.destination.dsn), "dbname=zodb password=s3cr3t")
      assert.deepInclude(got.destination.s3!, { bucket: "blobs", prefix: "price$5" })
    }))

  it.effect("comments, blank lines, indentation, case-insensitive types, names and keys; # inside a value is the value", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const got = yield* w.load(`# zodb-convert config
   # an indented comment

<FileStorage SOURCE>
\tPATH   ${w.dataFs}
</FILESTORAGE>
<PgJsonb Destination>
  DSN a=b
  History-Preserving TRUE
  s3-bucket-name b
  S3-Prefix a#b   
</pgjsonb>\r\n`)
      assert.strictEqual(got.source.kind, "filestorage")
      assert.deepInclude(got.destination, { historyPreserving: true })
      assert.strictEqual(got.destination.s3!.prefix, "a#b")
    }))

  it.effect("relative paths are relative to the working directory, not to the config file (as ZConfig leaves them); ~ is the home directory", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const file = w.write("etc/zodb.conf", `<filestorage source>\npath var/Data.fs\n</filestorage>\n<pgjsonb destination>\ndsn a=b\nblob-temp-dir ~/tmp\n</pgjsonb>\n`)
      const got = yield* ConvertConfig.load({ configFile: file, cwd: w.dir })
      assert.strictEqual(got.source.kind === "filestorage" && got.source.path, w.dataFs)
      assert.strictEqual(got.destination.blobTempDir, NodePath.join(process.env.HOME ?? "", "tmp"))
      const fromEtc = yield* Effect.result(ConvertConfig.load({ configFile: file, cwd: NodePath.join(w.dir, "etc") }))
      assert.isTrue(Result.isFailure(fromEtc))
    }))

  it.effect("the parser keeps each key's file and line, through %include", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const inc = w.write("inc.conf", "\n\ninner 1\n")
      const doc = yield* ZConfig.parse(`top x\n<a n>\n  k v\n  %include ${inc}\n  <b/>\n</a>\n`, NodePath.join(w.dir, "main.conf"))
      assert.deepStrictEqual(doc.root.keys.map((k) => [k.name, k.at.line]), [["top", 1]])
      const a = doc.root.sections[0]!
      assert.deepStrictEqual([a.type, a.name, a.at.line], ["a", "n", 2])
      assert.deepStrictEqual(a.keys.map((k) => [k.name, k.value, k.at.file, k.at.line]), [
        ["k", "v", NodePath.join(w.dir, "main.conf"), 3],
        ["inner", "1", inc, 3]
      ])
      assert.deepStrictEqual(a.sections.map((s) => [s.type, s.at.line]), [["b", 5]])
    }))
})

describe("ZConfig errors: file, line and what", () => {
  const src = (dataFs: string) => `<filestorage source>\n  path ${dataFs}\n</filestorage>\n`

  it.effect("each error names the file and the line", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const f = NodePath.join(w.dir, "zodb.conf")
      const s = src(w.dataFs)
      const cases: Array<[string, string]> = [
        [`${s}<pgjsonb destination>\n  dsn a=b\n  blob_treshold 1MB\n</pgjsonb>`, `${f}:6: unknown key "blob_treshold" in <pgjsonb> (did you mean blob-threshold?)`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n  blob-threshold 100KiB\n</pgjsonb>`, `${f}:6: blob-threshold in <pgjsonb>: "100KiB" is not a byte size (an integer, optionally with KB, MB or GB, e.g. 100KB)`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n  history-preserving maybe\n</pgjsonb>`, `${f}:6: history-preserving in <pgjsonb>: "maybe" is not a boolean (true/false, yes/no, on/off)`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n  pool-max-size ten\n</pgjsonb>`, `${f}:6: pool-max-size in <pgjsonb>: "ten" is not an integer`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n  pool-max-size 0\n</pgjsonb>`, `${f}:6: pool-max-size in <pgjsonb> must be at least 1`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n  dsn c=d\n</pgjsonb>`, `${f}:6: dsn is given twice in <pgjsonb> (first at line 5)`],
        [`${s}<pgjsonb destination>\n  blob-threshold 1MB\n</pgjsonb>`, `${f}:4: <pgjsonb> needs the key dsn`],
        [`${s}<pgjsonb destination>\n  dsn zodb\n</pgjsonb>`, `${f}:5: dsn in <pgjsonb> is neither libpq key=value (dbname=zodb host=…) nor a postgresql:// URI`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n`, `${f}:4: <pgjsonb> is never closed`],
        [`${s}<pgjsonb destination>\n  dsn a=b\n</filestorage>`, `${f}:6: </filestorage> does not close <pgjsonb> (opened at line 4)`],
        [`${s}</source>`, `${f}:4: </source> closes no open section`],
        [`${s}<pgjsonb destination\n`, `${f}:4: malformed section start (missing '>')`],
        [`${s}<pg jsonb destination>\n`, `${f}:4: malformed section header (expected <type> or <type name>)`],
        [`${s}%import`, `${f}:4: %import needs an argument`],
        [`${s}%includ x`, `${f}:4: unknown directive %includ (ZConfig knows %define, %import and %include)`],
        [`${s}%include missing.conf`, `${f}:4: %include missing.conf: ${NodePath.join(w.dir, "missing.conf")}: no such file`],
        [`${s}<pgjsonb destination>\n  dsn $NOPE\n</pgjsonb>`, `${f}:5: no %define for $NOPE`],
        [`${s}<pgjsonb destination>\n  dsn $(ZC_TEST_UNSET_VAR)\n</pgjsonb>`, `${f}:5: no environment variable ZC_TEST_UNSET_VAR for $(ZC_TEST_UNSET_VAR)`],
        [`%define a 1\n%define A 2\n`, `${f}:2: %define A: already defined with another value`],
        [`${s}<pgjsonb destination>\n  (dsn) a=b\n</pgjsonb>`, `${f}:5: malformed line (expected a key and its value, a <section>, or a %directive)`],
        [`${s}<pgjsonb destination>\n  9dsn a=b\n</pgjsonb>`, `${f}:5: "9dsn" is not a valid key name`],
        [`path /x\n`, `${f}:1: key "path" outside any section (keys belong in a storage section)`],
        [`${s}<destinaton>\n</destinaton>`, `${f}:4: unknown section <destinaton> (did you mean destination?): expected <source>, <destination>, or a storage section named source or destination`],
        [`${s}<source>\n<filestorage>\npath ${w.dataFs}\n</filestorage>\n</source>`, `${f}:4: a second source (the first is at line 1)`],
        [`<filestorage>\n  path ${w.dataFs}\n</filestorage>\n`, `${f}:1: <filestorage> at the top level must be named for its role (<filestorage source> or <filestorage destination>), or be inside <source> or <destination>`],
        [`${s}<filestorage destination>\n  path ${w.dataFs}\n</filestorage>`, `${f}:4: <filestorage destination> cannot be the destination: zodb-convert writes to a <pgjsonb> (%import zodb_pgjsonb)`],
        [`<pgjsonb source>\n  dsn a=b\n</pgjsonb>\n`, `${f}:1: <pgjsonb source> cannot be the source: zodb-convert reads a <filestorage> (also inside <blobstorage>) or a <relstorage> with <postgresql>`],
        [`<zeoclient source>\n  server localhost:8100\n</zeoclient>\n`, `${f}:1: <zeoclient source> cannot be the source: zodb-convert reads a <filestorage> (also inside <blobstorage>) or a <relstorage> with <postgresql>`],
        [`<source>\n<filestorag>\n</filestorag>\n</source>`, `${f}:2: unknown storage section <filestorag> (did you mean filestorage?): zodb-convert reads a <filestorage> (also inside <blobstorage>) or a <relstorage> with <postgresql>`],
        [`<source>\n</source>`, `${f}:1: <source> holds no storage section`],
        [`<source>\n  path x\n</source>`, `${f}:2: unknown key "path" in <source> (it holds only a storage section)`],
        [`<relstorage source>\n<mysql>\ndb zodb\n</mysql>\n</relstorage>`, `${f}:2: <mysql>: only a RelStorage on PostgreSQL can be read (<postgresql>)`],
        [`<relstorage source>\nkeep-history true\n</relstorage>`, `${f}:1: <relstorage> must hold exactly one database section (<postgresql>), it holds 0`],
        [`<filestorage source>\n  path ${w.dir}/nope/Data.fs\n</filestorage>`, `${f}:2: path in <filestorage>: ${w.dir}/nope/Data.fs: no such file`],
        [`<filestorage source>\n  path ${w.dataFs}\n  blob-dir ${w.dataFs}\n</filestorage>`, `${f}:3: blob-dir in <filestorage>: ${w.dataFs} is not a directory`],
        [`<filestorage source>\n  path ${w.dataFs}\n  create true\n</filestorage>`, `${f}:3: create true in <filestorage> would have ZODB empty the source file; remove it (a conversion only reads)`],
        [`<blobstorage source>\n  blob-dir ${w.blobs}\n  <filestorage>\n    path ${w.dataFs}\n    blob-dir ${w.blobs}\n  </filestorage>\n</blobstorage>`, `${f}:5: blob-dir is given both here and in the <blobstorage> around it (line 2)`],
        [`<blobstorage source>\n  <filestorage>\n    path ${w.dataFs}\n  </filestorage>\n</blobstorage>`, `${f}:1: <blobstorage> needs the key blob-dir`],
        [s, `${f}: no destination: the file has no <destination> section (nor a storage section named destination), and --dest-zope-conf is not given`]
      ]
      for (const [text, message] of cases) {
        const e = yield* w.refused(text)
        assert.strictEqual(e._tag, "ZConfigError")
        assert.strictEqual(e.message, message)
      }
    }))

  it.effect("a missing config file: exit 2, the file named; an %include of itself is refused", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const missing = NodePath.join(w.dir, "nope.conf")
      const r = yield* Effect.result(ConvertConfig.load({ configFile: missing }))
      assert.isTrue(Result.isFailure(r))
      if (Result.isFailure(r)) {
        assert.strictEqual(r.failure.message, `${missing}: no such file`)
        assert.strictEqual(r.failure[Runtime.errorExitCode], 2)
      }
      w.write("loop.conf", "%include zodb.conf\n")
      const e = yield* w.refused("%include loop.conf\n")
      assert.strictEqual(e.message, `${NodePath.join(w.dir, "loop.conf")}:1: %include zodb.conf includes itself`)
    }))

  it.effect("values of secret keys never appear in an error", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"
      for (const text of [
        `<pgjsonb destination>\n  dsn ${secret}\n</pgjsonb>`,
        `<pgjsonb destination>\n  dsn a=b\n  s3-secret ${secret}\n</pgjsonb>`,
        `<pgjsonb destination>\n  dsn a=b\n  s3-secret-key ${secret}\n  s3-secret-key ${secret}\n</pgjsonb>`,
        `<pgjsonb destination>\n  dsn a=b\n  s3-secret-key ${secret}\n  pool-max-size x\n</pgjsonb>`
      ]) {
        const e = yield* w.refused(text)
        for (let i = 0; i + 5 <= secret.length; i++) assert.notInclude(e.message, secret.slice(i, i + 5), e.message)
      }
    }))
})

describe("zope.conf: the storage of <zodb_db NAME>", () => {
  const zopeConf = (dataFs: string, other: string) => `%define INSTANCE /srv/site
instancehome $INSTANCE
%import relstorage
<eventlog>
  level INFO
  <logfile>
    path $INSTANCE/var/log/event.log
  </logfile>
</eventlog>
<zodb_db main>
    mount-point /
    cache-size 30000
    cache-size-bytes 1GB
    pool-timeout 2m
    <filestorage>
        path ${dataFs}
    </filestorage>
</zodb_db>
<zodb_db catalog>
    mount-point /catalog
    mount-point /catalog2
    <relstorage>
      <postgresql>
        dsn dbname=${other}
      </postgresql>
    </relstorage>
</zodb_db>
<zodb_db temporary>
    <temporarystorage>
      name Temporary database (for sessions)
    </temporarystorage>
    mount-point /temp_folder
    container-class Products.TemporaryFolder.TemporaryContainer
</zodb_db>
`

  it.effect("--source-zope-conf / --source-db pick a <zodb_db> (default main, name case-insensitive); other Zope sections are not read", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const zc = w.write("etc/zope.conf", zopeConf(w.dataFs, "catalog"))
      const dest = w.write("dest.conf", `<destination>\n<pgjsonb>\ndsn a=b\n</pgjsonb>\n</destination>\n`)
      const main = yield* ConvertConfig.load({ configFile: dest, sourceZopeConf: zc })
      assert.deepStrictEqual(main.source, { kind: "filestorage", path: w.dataFs, blobDir: undefined })
      assert.deepStrictEqual(main.ignored.map((i) => i.key), ["mount-point", "cache-size", "cache-size-bytes", "pool-timeout"])
      const catalog = yield* ConvertConfig.load({ configFile: dest, sourceZopeConf: zc, sourceDb: "Catalog" })
      assert.strictEqual(catalog.source.kind === "relstorage" && Redacted.value(catalog.source.dsn), "dbname=catalog")
    }))

  it.effect("both sides from zope.conf files (--dest-zope-conf, --dest-db)", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const src = w.write("old/zope.conf", zopeConf(w.dataFs, "x"))
      const dst = w.write("new/zope.conf", `%import zodb_pgjsonb\n<zodb_db main>\n  <pgjsonb>\n    dsn dbname=new\n    blob-threshold 0\n  </pgjsonb>\n</zodb_db>\n`)
      const got = yield* ConvertConfig.load({ sourceZopeConf: src, destZopeConf: dst })
      assert.strictEqual(got.source.kind, "filestorage")
      assert.deepInclude(got.destination, { blobThreshold: 0 })
    }))

  it.effect("errors: unknown db name (listing the names), unknown key, unsupported storage, a side given twice or not at all", () =>
    Effect.gen(function*() {
      const w = yield* workspace
      const zc = w.write("zope.conf", zopeConf(w.dataFs, "x"))
      const dest = w.write("dest.conf", `<pgjsonb destination>\ndsn a=b\n</pgjsonb>\n`)
      const both = w.write("both.conf", `<filestorage source>\npath ${w.dataFs}\n</filestorage>\n<pgjsonb destination>\ndsn a=b\n</pgjsonb>\n`)
      const failure = (options: ConvertConfig.LoadOptions) =>
        Effect.map(Effect.result(ConvertConfig.load(options)), (r) => Result.isFailure(r) ? r.failure.message : "loaded")
      assert.strictEqual(
        yield* failure({ configFile: dest, sourceZopeConf: zc, sourceDb: "nosuch" }),
        `${zc}: no <zodb_db nosuch> section; it has <zodb_db main>, <zodb_db catalog>, <zodb_db temporary>`
      )
      assert.strictEqual(
        yield* failure({ configFile: dest, sourceZopeConf: zc, sourceDb: "temporary" }),
        `${zc}:29: <temporarystorage> cannot be the source: zodb-convert reads a <filestorage> (also inside <blobstorage>) or a <relstorage> with <postgresql>`
      )
      assert.strictEqual(
        yield* failure({ configFile: dest, sourceZopeConf: w.write("z2.conf", "<zodb_db main>\n  cache-sise 5\n</zodb_db>\n") }),
        `${NodePath.join(w.dir, "z2.conf")}:2: unknown key "cache-sise" in <zodb_db> (did you mean cache-size?)`
      )
      assert.strictEqual(
        yield* failure({ configFile: dest, sourceZopeConf: w.write("z3.conf", "<http-server>\n</http-server>\n") }),
        `${NodePath.join(w.dir, "z3.conf")}: no <zodb_db main> section: the file has no <zodb_db> sections`
      )
      assert.strictEqual(
        yield* failure({ configFile: both, sourceZopeConf: zc }),
        `${both}: the source is given both in this file and by --source-zope-conf; give it once`
      )
      assert.strictEqual(
        yield* failure({ destZopeConf: w.write("d.conf", "<zodb_db main>\n<pgjsonb>\ndsn a=b\n</pgjsonb>\n</zodb_db>\n") }),
        "no source: give a config file with <source>, or --source-zope-conf FILE"
      )
      assert.strictEqual(yield* failure({ configFile: dest, sourceZopeConf: NodePath.join(w.dir, "none.conf") }), `${NodePath.join(w.dir, "none.conf")}: no such file`)
    }))
})
