/**
 * The `lo-migrate` command line: the root command and its subcommands.
 */
import { Command } from "effect/cli"
import { demo } from "./commands/demo.ts"
import { migrate } from "./commands/migrate.ts"
import { plan } from "./commands/plan.ts"
import { prune } from "./commands/prune.ts"
import { verify } from "./commands/verify.ts"

export const version = "0.1.0"

export const cli = Command.make("lo-migrate").pipe(
  Command.withDescription("Move PostgreSQL large objects into S3-compatible storage, re-keyed by SHA-256"),
  Command.withSubcommands([migrate, plan, verify, prune, demo])
)

export const run = Command.run(cli, { version })
