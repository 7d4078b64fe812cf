/**
 * Errors that end a command. Each carries a readable message and the data to act on, and maps to the
 * process exit code through `Runtime.errorExitCode`:
 * - 2: a setup problem found before any work (settings, connection, credentials, schema, bucket, lock);
 *   each names the setting or object at fault and carries `fix`, what to do about it (the flag, the
 *   GRANT, the index, the next command), when there is something to do;
 * - 1: the run itself failed (rows failed, a store or database that stayed broken past the retry budget).
 * Per-row problems are not errors: they are `RowFailure` values (see LargeObject.ts) and the run goes on.
 * The table of every exit-2 error is docs/exit-codes.md (test/ExitCodes.test.ts keeps it complete).
 */
import { Data, Runtime } from "effect"
import { isNoCode, isNoMessage, meaningOf, statusMeaningOf } from "./S3ErrorCodes.ts"

/**
 * `text` and, on a line of its own, what to do about it, as rustc and cargo print a "help:" line (psql
 * a HINT): the fix stands out from the diagnosis, and a script can still take the first line.
 */
export const withFix = (text: string, fix: string | undefined): string =>
  fix === undefined || fix === "" ? text : `${text}\n  help: ${fix}`

/** A setting has a value the tool cannot use. */
export class SettingsError extends Data.TaggedError("SettingsError")<{
  /** the flag (`--bucket`), the config key (`dsn of <pgjsonb> at convert.cfg:5`), or the library option */
  readonly setting: string
  readonly problem: string
  /** what to do, when `problem` does not already say it */
  readonly fix?: string | undefined
  /** where the value came from when not from the command line: `LO_MIGRATE_BUCKET`, `settings.json:3` */
  readonly from?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`invalid setting ${this.setting}${this.from === undefined ? "" : ` (from ${this.from})`}: ${this.problem}`, this.fix)
  }
}

/** The --config file is missing, unreadable, not JSON, or names a setting the command does not have. */
export class ConfigFileError extends Data.TaggedError("ConfigFileError")<{
  readonly file: string
  /** the line of the key at fault, when one is */
  readonly line?: number | undefined
  readonly problem: string
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`config file ${this.file}${this.line === undefined ? "" : `:${this.line}`}: ${this.problem}`, this.fix)
  }
}

/** The deferred mode's manifest or staging directory cannot be used. */
export class ManifestError extends Data.TaggedError("ManifestError")<{
  readonly path: string
  readonly problem: string
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`manifest ${this.path}: ${this.problem}`, this.fix)
  }
}

/** PostgreSQL cannot be reached, refuses the credentials, or lacks what the tool needs. */
export class DatabaseUnavailable extends Data.TaggedError("DatabaseUnavailable")<{
  readonly problem: string
  /** the setting that points at this server (`--pg-url`, `--dest-pg-url`, `dsn of <pgjsonb> at convert.cfg:5`) */
  readonly setting?: string | undefined
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`PostgreSQL${this.setting === undefined ? "" : ` (${this.setting})`}: ${this.problem}`, this.fix)
  }
}

/**
 * The role lacks a privilege a command needs on a table: found before any work by asking the server
 * (postgres/Grants.ts), instead of failing on the first statement that needs it.
 */
export class MissingGrant extends Data.TaggedError("MissingGrant")<{
  /** the role the tool connected as (as PostgreSQL quotes it) */
  readonly role: string
  /** what needs the privileges, e.g. "the copy reads and marks the rows of _nice_binary" */
  readonly purpose: string
  /** per table (as SQL names it), the privileges the role lacks on it */
  readonly missing: ReadonlyArray<{ readonly table: string; readonly privileges: ReadonlyArray<string> }>
}> {
  readonly [Runtime.errorExitCode] = 2
  /** the statements that grant what is missing, to run as the tables' owner */
  get grants(): ReadonlyArray<string> {
    return this.missing.map((m) => `GRANT ${m.privileges.join(", ")} ON ${m.table} TO ${this.role};`)
  }
  get fix(): string {
    return `as the owner of the table${this.missing.length === 1 ? "" : "s"} (or a superuser), run: ${this.grants.join(" ")}`
  }
  override get message() {
    const lacks = this.missing.map((m) => `${m.privileges.join(", ")} on ${m.table}`).join("; ")
    return withFix(`PostgreSQL: role ${this.role} lacks ${lacks} (${this.purpose})`, this.fix)
  }
}

/** The source table is missing, or lacks a column the profile needs. */
export class SchemaMismatch extends Data.TaggedError("SchemaMismatch")<{
  readonly table: string
  readonly problem: string
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`table ${this.table}: ${this.problem}`, this.fix)
  }
}

/**
 * A schema change (ALTER TABLE) waited its bound for the table's lock: another session holds the table
 * (e.g. a long or idle transaction), and waiting longer would queue the application's own queries on the
 * table behind the change. Nothing was changed.
 */
export class TableBusy extends Data.TaggedError("TableBusy")<{
  readonly table: string
  /** what the change does, e.g. "add column sha2" */
  readonly what: string
  readonly waitedMs: number
  /** the sessions holding a lock on the table, as found in pg_locks (may be empty: gone meanwhile) */
  readonly holders: ReadonlyArray<string>
  /** the statement(s) to run by hand instead */
  readonly manual: string
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    return `run lo-migrate again once that transaction has ended, or run it yourself as the table's owner: ${this.manual}`
  }
  override get message() {
    const held = this.holders.length === 0 ? "" : `; held by ${this.holders.join("; ")}`
    return withFix(
      `table ${this.table} is busy: cannot ${this.what}, its lock was not free within ${this.waitedMs / 1000} s ` +
        `(waiting longer would block the application's queries on the table)${held}`,
      this.fix
    )
  }
}

/**
 * Nice2's DeleteUnreferencedBinariesBatchJob would delete rows whose data already sits in S3, so the
 * migration refuses to start while it is active, or when its row is missing (its state is then unknown).
 */
export class BatchJobActive extends Data.TaggedError("BatchJobActive")<{
  readonly job: string
  readonly state: "active" | "missing"
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    const id = `'${this.job.replaceAll("'", "''")}'`
    return this.state === "active"
      ? `deactivate it before migrating (in Nice2, or: UPDATE nice_batch_job SET active = false WHERE id = ${id};)`
      : `add its row with active = false (e.g. INSERT INTO nice_batch_job (id, active) VALUES (${id}, false);, ` +
        "with whatever other columns the table requires)"
  }
  override get message() {
    return withFix(
      this.state === "active"
        ? `batch job ${this.job} is active in nice_batch_job: it would delete rows already moved to S3`
        : `batch job ${this.job} has no row in nice_batch_job: its state cannot be checked`,
      this.fix
    )
  }
}

/**
 * prune will not change anything: deleting would be unsafe or unbounded as things are (relstorage: no
 * index on blob_chunk(chunk), so RelStorage's delete trigger would scan the table once per deleted row).
 */
export class PruneRefused extends Data.TaggedError("PruneRefused")<{
  readonly table: string
  readonly problem: string
  /** what to do about it, with the exact statement when there is one */
  readonly fix: string
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`prune refused, nothing changed: table ${this.table} ${this.problem}`, this.fix)
  }
}

/** The object store rejects the endpoint, the credentials or the bucket before any work started. */
export class StoreUnavailable extends Data.TaggedError("StoreUnavailable")<{
  readonly bucket: string
  readonly problem: string
  /** the settings to check or the permission to grant */
  readonly fix?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return withFix(`S3 bucket ${this.bucket}: ${this.problem}`, this.fix)
  }
}

/** Another run holds the migration lock of this table. */
export class MigrationLocked extends Data.TaggedError("MigrationLocked")<{
  readonly table: string
  /** the program whose runs exclude each other: lo-migrate, zodb-convert */
  readonly tool?: string | undefined
  /** the sessions holding the lock, as pg_locks and pg_stat_activity show them (may be empty: gone meanwhile) */
  readonly holders?: ReadonlyArray<{ readonly pid: number; readonly description: string }> | undefined
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    const pids = (this.holders ?? []).map((h) => h.pid)
    // a session-level lock: it goes with its session, so a run that died left none; only a hung one holds it
    return "wait for that run to finish (the lock goes with its session, also when the process dies)" +
      (pids.length === 0
        ? ""
        : `; if it hangs, end its session: ${pids.map((p) => `SELECT pg_terminate_backend(${p});`).join(" ")}`)
  }
  override get message() {
    const held = this.holders === undefined || this.holders.length === 0
      ? ""
      : `: held by ${this.holders.map((h) => h.description).join("; ")}`
    return withFix(`another ${this.tool ?? "lo-migrate"} run is working on ${this.table} (advisory lock held)${held}`, this.fix)
  }
}

/**
 * The run lock's session was lost and the lock could not be taken again within the retry budget (the
 * server refuses new sessions, or stopped answering): going on without it would let a second run work
 * alongside this one, so the run ends (exit 1). What was committed stays; a rerun continues.
 */
export class RunLockLost extends Data.TaggedError("RunLockLost")<{
  readonly table: string
  readonly problem: string
  readonly tool?: string | undefined
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `lost the run lock of ${this.table} and could not take it again: ${this.problem}; ` +
      `what was committed stays, run ${this.tool ?? "lo-migrate"} again once PostgreSQL accepts sessions`
  }
}

/** `--shard i/n` while shards of the same table run with another `n`: they would overlap. */
export class ShardCountConflict extends Data.TaggedError("ShardCountConflict")<{
  readonly table: string
  readonly count: number
  /** the shard counts of the runs already going */
  readonly running: ReadonlyArray<number>
}> {
  readonly [Runtime.errorExitCode] = 2
  get fix(): string {
    return `give --shard i/${this.running[0]} like the runs going on, or wait for them to finish`
  }
  override get message() {
    const running = this.running.map((n) => `/${n}`).join(", ")
    return withFix(
      `shards of ${this.table} are running with ${running}, this run has /${this.count}: every process of one ` +
        "migration must use the same shard count",
      this.fix
    )
  }
}

/** An S3 call failed for good: past the retry budget, or with an error that retrying cannot fix. */
export class StoreError extends Data.TaggedError("StoreError")<{
  readonly operation: string
  readonly key: string
  readonly cause: unknown
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `S3 ${this.operation} ${this.key} failed: ${describeCause(this.cause)}`
  }
}

/** A database statement failed for good during the run. */
export class DatabaseError extends Data.TaggedError("DatabaseError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `PostgreSQL ${this.operation} failed: ${describeCause(this.cause)}`
  }
}

/** Reading or writing a staged payload (temp file) failed. */
export class PayloadError extends Data.TaggedError("PayloadError")<{
  readonly path: string
  readonly cause: unknown
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `temp file ${this.path}: ${describeCause(this.cause)}`
  }
}

/** The run finished, but some rows could not be migrated; they are named in the output. */
export class RowsFailed extends Data.TaggedError("RowsFailed")<{
  readonly failed: number
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `${this.failed} object(s) failed; fix them and rerun lo-migrate (finished rows are not redone)`
  }
}

/**
 * Migrated objects that failed verification (missing, wrong size, wrong SHA-256): `verify` and `prune`
 * end with it, and `migrate --finalize` refuses to finalize. The objects are named in the output.
 */
export class VerificationFailed extends Data.TaggedError("VerificationFailed")<{
  readonly bad: number
  /** what was refused or what the caller should do next */
  readonly consequence: string
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `${this.bad} migrated object(s) failed verification: ${this.consequence}`
  }
}

/** The run stopped on request (a signal) after committing what it had stored: exit 130, like an interruption. */
export class RunStopped extends Data.TaggedError("RunStopped")<{
  readonly migrated: number
}> {
  readonly [Runtime.errorExitCode] = 130
  override get message() {
    return `stopped on request after migrating ${this.migrated} object(s); run lo-migrate again to continue`
  }
}

/** Anything a command can fail with. */
export type MigrateError =
  | SettingsError
  | DatabaseUnavailable
  | SchemaMismatch
  | TableBusy
  | BatchJobActive
  | StoreUnavailable
  | MigrationLocked
  | ShardCountConflict
  | StoreError
  | DatabaseError
  | PayloadError
  | RowsFailed
  | VerificationFailed
  | RunStopped
  | ManifestError
  | RunLockLost
  | PruneRefused
  | MissingGrant

/**
 * A short, secret-free description of an underlying error: SQL errors carry the server's text in
 * `reason.cause` (and PostgreSQL's HINT, passed on: it often names the fix), AWS errors their name (the
 * S3 error code), message and HTTP status; a server error without a message gets the code's meaning
 * from S3ErrorCodes.ts.
 */
export const describeCause = (cause: unknown): string => {
  if (typeof cause !== "object" || cause === null) return String(cause)
  const c = cause as {
    readonly name?: unknown
    readonly message?: unknown
    readonly code?: unknown
    readonly reason?: {
      readonly _tag?: unknown
      readonly cause?: { readonly message?: unknown; readonly code?: unknown; readonly hint?: unknown }
    }
    readonly $metadata?: { readonly httpStatusCode?: unknown }
  }
  if (c.reason !== undefined) {
    const inner = c.reason.cause
    const text = typeof inner?.message === "string" ? inner.message : String(c.reason._tag)
    const hint = typeof inner?.hint === "string" && inner.hint !== "" ? ` (PostgreSQL's hint: ${inner.hint})` : ""
    return `${typeof inner?.code === "string" ? `${text} [SQLSTATE ${inner.code}]` : text}${hint}`
  }
  const status = c.$metadata?.httpStatusCode
  const given = typeof c.message === "string" ? c.message : ""
  // a server's error without a message (RGW leaves <Message> empty, a HEAD has no body): the SDK says
  // "UnknownError"; say what the code means instead, or without a code what the status means
  if (c.$metadata !== undefined && typeof c.name === "string" && isNoCode(c.name) && isNoMessage(given, c.name)) {
    return `${statusMeaningOf(typeof status === "number" ? status : undefined)}${typeof status === "number" ? ` [HTTP ${status}]` : ""}`
  }
  const name = typeof c.name === "string" && c.name !== "Error" ? `${c.name}: ` : ""
  const message = c.$metadata !== undefined && typeof c.name === "string" && c.name !== "Error" && isNoMessage(given, c.name)
    ? meaningOf(c.name)
    : given
  const code = typeof c.code === "string" ? ` (${c.code})` : ""
  return `${name}${message}${code}${typeof status === "number" ? ` [HTTP ${status}]` : ""}` || String(cause)
}
