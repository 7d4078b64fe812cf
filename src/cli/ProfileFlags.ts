/**
 * The source flags every command shares: `--profile` and the `table` profile's table and columns, and
 * `--shard i/n` for scale-out.
 */
import { Config, Option, type Redacted } from "effect"
import { Flag } from "effect/cli"
import { consumers, defaultBlobThreshold, defaultSha256Column, defaultTemplate, type ProfileInput, profiles } from "../domain/Profile.ts"
import { described } from "./Flags.ts"

const optionalString = (name: string, text: string, extra: { readonly default?: string; readonly env?: string } = {}) =>
  Flag.String(name).pipe(Flag.withDescription(described(text, extra)), Flag.optional)

export const profileFlags = {
  profile: Flag.Literals("profile", profiles).pipe(
    Flag.withDescription(described("what to migrate: nice2 (_nice_binary), table (any table with an oid column) or relstorage (RelStorage's blobs only, into a zodb-pgjsonb blob_state; a whole ZODB to zodb-pgjsonb is zodb-convert's)", {
      default: "nice2",
      env: "LO_MIGRATE_PROFILE"
    })),
    Flag.withFallbackConfig(Config.Literals(profiles, "LO_MIGRATE_PROFILE")),
    Flag.withDefault("nice2" as const)
  ),
  table: optionalString("table", "table profile: the table, optionally schema-qualified (schema.table; \"a.b\" quotes a dot)"),
  oidColumn: optionalString("oid-column", "table profile: the column holding the large object's oid"),
  keyColumn: Flag.String("key-column").pipe(
    Flag.withDescription("table profile: the row key column; repeat it for a composite key (rows are listed in key order)"),
    Flag.between(0, 32)
  ),
  mimeColumn: optionalString("mime-column", "table profile: the column holding the Content-Type", { default: "application/octet-stream for all" }),
  sizeColumn: optionalString("size-column", "table profile: the column holding the size in bytes", {
    default: "the large object's own length"
  }),
  sha256Column: optionalString("sha256-column", "table profile: where the SHA-256 hex goes (added as character(64) when missing)", {
    default: defaultSha256Column
  }),
  keyTemplate: optionalString("key-template", "table profile: the S3 key of an object, from {sha256}, {key} (parts joined by /) and {oid}", {
    default: defaultTemplate
  }),
  blobThreshold: Flag.Int("blob-threshold").pipe(
    Flag.withDescription(described("relstorage profile: blobs of at least this many bytes go to S3, smaller ones inline into blob_state.data (0: all to S3)", {
      default: defaultBlobThreshold
    })),
    Flag.optional
  ),
  destPgUrl: Flag.Redacted("dest-pg-url").pipe(
    Flag.withDescription(described("relstorage profile: the database that holds blob_state, a URL or key=value DSN as --pg-url takes (for zodb-pgjsonb: its database)", {
      default: "the --pg-url database: blob_state next to RelStorage, which zodb-pgjsonb cannot use; for a later step only",
      env: "LO_MIGRATE_DEST_PG_URL"
    })),
    Flag.withFallbackConfig(Config.Redacted("LO_MIGRATE_DEST_PG_URL")),
    Flag.optional
  ),
  s3Prefix: optionalString(
    "s3-prefix",
    "relstorage profile: the objects go to PREFIX/blobs/{zoid:016x}/{tid:016x}.blob; blob_state.s3_key holds the key without " +
      "PREFIX, as zodb-pgjsonb stores it (set its s3-prefix to the same value); verify, prune and upload-blobs need the same --s3-prefix"
  ),
  consumer: Flag.Literals("for", consumers).pipe(
    Flag.withDescription(
      "relstorage profile: zodb-pgjsonb: blob_state is for zodb-pgjsonb, so it must go into its database (--dest-pg-url); " +
        "refuses blob_state next to RelStorage's object_state. Without --dest-pg-url blob_state stays in the RelStorage " +
        "database, only to keep the blobs there for a later step; a whole migration to zodb-pgjsonb is zodb-convert's"
    ),
    Flag.optional
  ),
  shard: Flag.String("shard").pipe(
    Flag.withDescription(described(
      "i/n: work only on the rows whose key hashes to i of n (0 <= i < n); n processes with 0/n .. n-1/n share one migration",
      { env: "LO_MIGRATE_SHARD" }
    )),
    Flag.withFallbackConfig(Config.String("LO_MIGRATE_SHARD")),
    Flag.optional
  )
}

export interface ProfileFlagValues {
  readonly profile: typeof profiles[number]
  readonly table: Option.Option<string>
  readonly oidColumn: Option.Option<string>
  readonly keyColumn: ReadonlyArray<string>
  readonly mimeColumn: Option.Option<string>
  readonly sizeColumn: Option.Option<string>
  readonly sha256Column: Option.Option<string>
  readonly keyTemplate: Option.Option<string>
  readonly shard: Option.Option<string>
  readonly blobThreshold: Option.Option<number>
  readonly s3Prefix: Option.Option<string>
  readonly destPgUrl: Option.Option<Redacted.Redacted<string>>
  readonly consumer: Option.Option<typeof consumers[number]>
}

export const profileInput = (flags: ProfileFlagValues): ProfileInput => ({
  profile: flags.profile,
  table: Option.getOrUndefined(flags.table),
  oidColumn: Option.getOrUndefined(flags.oidColumn),
  keyColumns: flags.keyColumn,
  mimeColumn: Option.getOrUndefined(flags.mimeColumn),
  sizeColumn: Option.getOrUndefined(flags.sizeColumn),
  sha256Column: Option.getOrUndefined(flags.sha256Column),
  keyTemplate: Option.getOrUndefined(flags.keyTemplate),
  shard: Option.getOrUndefined(flags.shard),
  blobThreshold: Option.getOrUndefined(flags.blobThreshold),
  s3Prefix: Option.getOrUndefined(flags.s3Prefix),
  destPgUrl: Option.getOrUndefined(flags.destPgUrl),
  consumer: Option.getOrUndefined(flags.consumer)
})
