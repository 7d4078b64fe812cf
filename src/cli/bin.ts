#!/usr/bin/env node
/** The `lo-migrate` executable (exit codes: Main.ts). */
import { run } from "./Cli.ts"
import { runProcess } from "./Main.ts"

runProcess("lo-migrate", run)
