/**
 * Looking up rows by keys that come from outside the table (a manifest's row keys): a key whose value
 * does not fit its column's type must fail alone, with the server's words, never the whole batch.
 */
import { Effect } from "effect"
import { DatabaseError, describeCause } from "../domain/Errors.ts"
import * as Recorded from "../domain/Recorded.ts"

/** A PostgreSQL data exception (SQLSTATE class 22: invalid text for the type, out of range, ...). */
export const isDataException = (error: DatabaseError): boolean => {
  const code = (error.cause as { readonly reason?: { readonly cause?: { readonly code?: unknown } } } | undefined)?.reason?.cause?.code
  return typeof code === "string" && code.startsWith("22")
}

/**
 * `lookup` over all `keys` in one statement; when that fails with a data exception, each key is looked
 * up alone and those that still fail are `NotAKey`, naming the server's problem.
 */
export const recordedByKey = (
  keys: ReadonlyArray<string>,
  lookup: (keys: ReadonlyArray<string>) => Effect.Effect<ReadonlyMap<string, Recorded.Recorded>, DatabaseError>
): Effect.Effect<ReadonlyMap<string, Recorded.Recorded>, DatabaseError> =>
  keys.length === 0 ? Effect.succeed(new Map()) : lookup(keys).pipe(
    Effect.catchIf(isDataException, () =>
      Effect.map(
        Effect.forEach(keys, (key) =>
          lookup([key]).pipe(
            Effect.catchIf(isDataException, (error) =>
              Effect.succeed(new Map([[key, Recorded.notAKey(describeCause(error.cause))]])))
          )),
        (maps) => new Map(maps.flatMap((m) => [...m]))
      ))
  )
