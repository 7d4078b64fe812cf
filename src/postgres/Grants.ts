/**
 * What the connected role may do on the tables a command uses, asked of the server before any work, so
 * that a missing grant ends the command at once (exit 2) with the GRANT that fixes it, instead of the
 * first statement that needs it failing with a bare "permission denied" (exit 1, possibly mid-run).
 *
 * SELECT, INSERT and UPDATE count as granted when the role holds them on the table or on any of its
 * columns (`has_any_column_privilege`): a role granted only the columns it uses must not be refused, and
 * if a column is still missing the statement says so as before. DELETE has no column form. A table that
 * does not exist is not this check's business (the profiles name it as a SchemaMismatch).
 */
import { Effect } from "effect"
import type { SqlClient, SqlError } from "effect/sql"
import { type DatabaseError, MissingGrant } from "../domain/Errors.ts"

export type Privilege = "SELECT" | "INSERT" | "UPDATE" | "DELETE"

export interface Need {
  /** the table as SQL names it (quoted where needed): it goes into to_regclass and into the GRANT */
  readonly table: string
  readonly privileges: ReadonlyArray<Privilege>
}

type Run = <A>(operation: string, effect: Effect.Effect<A, SqlError.SqlError>) => Effect.Effect<A, DatabaseError>

/** Fails with `MissingGrant` naming every privilege of `needs` the role lacks; `purpose` says what needs them. */
export const require = (
  sql: SqlClient.SqlClient,
  run: Run,
  needs: ReadonlyArray<Need>,
  purpose: string
): Effect.Effect<void, MissingGrant | DatabaseError> =>
  Effect.gen(function*() {
    let role = ""
    const missing: Array<{ readonly table: string; readonly privileges: ReadonlyArray<string> }> = []
    for (const need of needs) {
      const rows = yield* run(
        "check the role's privileges",
        sql<{ readonly role: string; readonly privilege: string; readonly granted: boolean | null }>`
          SELECT quote_ident(current_user) AS role, p.privilege,
            CASE WHEN to_regclass(${need.table}) IS NULL THEN true
                 WHEN p.privilege = 'DELETE' THEN has_table_privilege(to_regclass(${need.table}), p.privilege)
                 ELSE has_any_column_privilege(to_regclass(${need.table}), p.privilege) END AS granted
          FROM unnest(${need.privileges}::text[]) WITH ORDINALITY AS p(privilege, n) ORDER BY p.n`
      )
      role = rows[0]?.role ?? role
      const lacking = rows.filter((r) => r.granted === false).map((r) => r.privilege)
      if (lacking.length > 0) missing.push({ table: need.table, privileges: lacking })
    }
    if (missing.length > 0) return yield* new MissingGrant({ role, purpose, missing })
  })

/**
 * `require`, asked once: the commands after the copy reach the profile through calls made per page, and
 * the answer does not change during a run. A failed check is asked again next time.
 */
export const once = (check: Effect.Effect<void, MissingGrant | DatabaseError>): Effect.Effect<void, MissingGrant | DatabaseError> => {
  let granted = false
  return Effect.suspend(() =>
    granted ? Effect.void : Effect.tap(check, () =>
      Effect.sync(() => {
        granted = true
      }))
  )
}
