/**
 * The one line the CLI prints when a command ends in failure. Our own errors (they know their exit
 * code) have readable messages and are printed as they are; anything else reaching the top is a bug
 * or an unmapped error, printed as "unexpected error: <what failed>" rather than a bare driver message
 * or a stack trace, and never with credentials.
 */
import { Cause, Runtime } from "effect"
import { SqlError } from "effect/sql"
import { describeCause } from "../domain/Errors.ts"

export interface FailureReport {
  readonly message: string
  /** not one of our errors: a defect, or a library's error that nothing mapped */
  readonly unexpected: boolean
}

const isOurs = (error: unknown): error is Error =>
  typeof error === "object" && error !== null && Runtime.errorExitCode in error && "message" in error

/** `user:password@` in URLs becomes `user:***@`: an error message may quote a connection string. */
export const redactUrls = (text: string): string => text.replace(/(\/\/[^/\s:@]*):[^/\s@]*@/g, "$1:***@")

/** What failed, in one line: PostgreSQL errors with their kind and the server's text. */
export const describeUnexpected = (error: unknown): string =>
  redactUrls(
    SqlError.isSqlError(error) ? `PostgreSQL ${error.reason._tag}: ${describeCause(error)}` : describeCause(error)
  )

/** The line for `cause`; undefined when there is nothing to say (interrupted). */
export const report = (cause: Cause.Cause<unknown>): FailureReport | undefined => {
  const failure = cause.reasons.find(Cause.isFailReason)
  if (failure !== undefined) {
    return isOurs(failure.error)
      ? { message: failure.error.message, unexpected: false }
      : { message: `unexpected error: ${describeUnexpected(failure.error)}`, unexpected: true }
  }
  const defect = cause.reasons.find(Cause.isDieReason)
  if (defect !== undefined) return { message: `unexpected error: ${describeUnexpected(defect.defect)}`, unexpected: true }
  return undefined
}
