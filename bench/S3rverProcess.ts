/**
 * s3rver in a process of its own, so that its CPU and memory are not lo-migrate's. Started by the
 * bench as `node --openssl-legacy-provider bench/S3rverProcess.ts <directory>` (Node strips the types);
 * the legacy provider keeps ListObjectsV2 past 1000 keys working (FIELD-NOTES §13). Prints
 * `listening <port>` once it accepts requests, and stops on SIGTERM or when its parent goes away.
 */
import S3rver from "s3rver"

const directory = process.argv[2]
if (directory === undefined) {
  process.stderr.write("usage: S3rverProcess.ts <directory>\n")
  process.exit(2)
}
const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory })
const { port } = await server.run()
process.stdout.write(`listening ${port}\n`)
const stop = () => {
  server.close().finally(() => process.exit(0))
}
process.on("SIGTERM", stop)
process.on("SIGINT", stop)
// the bench keeps stdin open; when it dies, stdin ends and so does this server
process.stdin.on("end", stop)
process.stdin.resume()
