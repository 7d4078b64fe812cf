/**
 * The raw PUT measurement in a Node process of its own, like the lo-migrate run it is compared with
 * (same process shape: no bench state, its own heap and event loop). Reads its job as JSON from argv,
 * prints the PutRun (rate, CPU of the PUT phase and of the process, peak RSS) as JSON on stdout.
 */
import { rawPut } from "./Measure.ts"

const job = JSON.parse(process.argv[2] ?? "{}") as {
  readonly pgUrl: string
  readonly endpoint: string
  readonly bucket: string
  readonly sizes: ReadonlyArray<number>
  readonly concurrency: number
}
const rate = await rawPut(job.pgUrl, job.endpoint, job.bucket, job.sizes, job.concurrency)
process.stdout.write(JSON.stringify(rate) + "\n")
