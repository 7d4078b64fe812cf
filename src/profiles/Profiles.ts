/** A profile's layer of phase services (CopySource, PlanSource, AfterCopy): every profile serves every command. */
import type { Layer } from "effect"
import type { SqlClient } from "effect/sql"
import type { Profile, Shard } from "../domain/Profile.ts"
import type { RetryPolicy } from "../core/Retry.ts"
import type { Stats } from "../core/Stats.ts"
import * as Nice2 from "./nice2/Nice2.ts"
import type { ProfileServices } from "../phases/ProfileServices.ts"
import * as RelStorageSource from "./relstorage/RelStorageSource.ts"
import * as TableSource from "./table/TableSource.ts"

export const layer = (
  profile: Profile,
  shard: Shard | undefined,
  policy: RetryPolicy,
  destination: RelStorageSource.DestinationOptions = {}
): Layer.Layer<ProfileServices, never, SqlClient.SqlClient | Stats> =>
  profile._tag === "nice2"
    ? Nice2.layer(policy, shard)
    : profile._tag === "table"
    ? TableSource.layer(profile, shard, policy)
    : RelStorageSource.layer(profile, shard, policy, destination)
