/**
 * Errors of `lo-migrate demo`, which brings its own PostgreSQL and S3.
 */
import { Data, Runtime } from "effect"

/** An embedded server (PostgreSQL cluster, PGlite, s3rver) could not be started: nothing was done. */
export class EmbeddedUnavailable extends Data.TaggedError("EmbeddedUnavailable")<{
  readonly service: string
  readonly problem: string
}> {
  readonly [Runtime.errorExitCode] = 2
  override get message() {
    return `cannot start the embedded ${this.service}: ${this.problem}`
  }
}

/** After the demo's migration, S3 does not hold what the rows say: the invariant was broken. */
export class VerificationFailed extends Data.TaggedError("VerificationFailed")<{
  readonly mismatches: ReadonlyArray<string>
  readonly checked: number
}> {
  readonly [Runtime.errorExitCode] = 1
  override get message() {
    return `verification failed for ${this.mismatches.length} of ${this.checked} object(s): ${this.mismatches.slice(0, 5).join("; ")}`
  }
}
