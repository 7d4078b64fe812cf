/**
 * The `lo-migrate` command line: the root command and its subcommands.
 */
import { Effect, Stdio } from "effect"
import { Command, Flag, GlobalFlag } from "effect/cli"
import * as ConfigFile from "./ConfigFile.ts"
import { demo } from "./demo.ts"
import { migrate } from "./migrate.ts"
import { plan } from "./plan.ts"
import { prune } from "./prune.ts"
import { uploadBlobs } from "./uploadBlobs.ts"
import { verify } from "./verify.ts"
import { zodbConvert } from "./zodbConvert.ts"

export const version = "0.1.0"

/** `--config FILE` (see ConfigFile.ts, which applies it before parsing): declared so every command accepts it. */
export const configFlag = GlobalFlag.Setting(ConfigFile.flagName)({
  flag: Flag.String(ConfigFile.flagName).pipe(
    Flag.withDescription("JSON file of settings keyed by long flag name; flags and environment win over it"),
    Flag.optional
  )
})

export const cli = Command.make("lo-migrate").pipe(
  Command.withDescription("Move PostgreSQL large objects into S3-compatible storage, re-keyed by SHA-256"),
  Command.withSubcommands([migrate, uploadBlobs, plan, verify, prune, zodbConvert, demo]),
  Command.withGlobalFlags([configFlag])
)

/** Runs the CLI on the process's argv, with the --config file's settings added first. */
export const run = Stdio.Stdio.use(({ args }) =>
  Effect.flatMap(args, (argv) =>
    Effect.flatMap(ConfigFile.apply(cli, argv, process.env), (withFile) => Command.runWith(cli, { version })(withFile)))
)

/** The `zodb-convert` executable: the same command as `lo-migrate zodb-convert`, at the root. */
export const runZodbConvert = Stdio.Stdio.use(({ args }) => Effect.flatMap(args, Command.runWith(zodbConvert, { version })))
