/**
 * The `Source` layer of a profile, and which commands each profile can carry out: a command a profile
 * cannot serve is refused with exit 2 before any work, never half done.
 */
import { Effect, type Layer } from "effect"
import type { SqlClient } from "effect/sql"
import { ProfileUnsupported } from "../domain/Errors.ts"
import type { Profile, Shard } from "../domain/Profile.ts"
import type { RetryPolicy } from "../pipeline/Retry.ts"
import type { Stats } from "../pipeline/Stats.ts"
import * as Nice2 from "./Nice2.ts"
import type { Source } from "./Source.ts"
import * as RelStorageSource from "./RelStorageSource.ts"
import * as TableSource from "./TableSource.ts"

export const layer = (
  profile: Profile,
  shard: Shard | undefined,
  policy: RetryPolicy,
  destination: RelStorageSource.DestinationOptions = {}
): Layer.Layer<Source, never, SqlClient.SqlClient | Stats> =>
  profile._tag === "nice2"
    ? Nice2.layer(policy, shard)
    : profile._tag === "table"
    ? TableSource.layer(profile, shard, policy)
    : RelStorageSource.layer(profile, shard, policy, destination)

/** What a command does that a profile may not support. */
export type Capability = "plan" | "verify --against-source" | "prune" | "upload-blobs" | "--finalize" | "--deferred-blobs"

const unsupported: Record<Profile["_tag"], ReadonlyArray<Capability>> = {
  nice2: [],
  table: [],
  relstorage: []
}

/** Fails with exit 2 when `profile` cannot do `what`. */
export const require = (profile: Profile, what: Capability): Effect.Effect<void, ProfileUnsupported> =>
  unsupported[profile._tag].includes(what)
    ? Effect.fail(new ProfileUnsupported({ profile: profile._tag, what }))
    : Effect.void
