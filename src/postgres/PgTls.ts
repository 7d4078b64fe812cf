/**
 * TLS to PostgreSQL. `sslmode=require|verify-ca|verify-full` in the URL turns TLS on, verified against
 * Node's trusted CAs (stricter than libpq's `require`, which does not verify). `--pg-ca FILE` adds the
 * CA(s) that sign the server's certificate (a private CA, a self-signed server) and turns TLS on with
 * verification of the certificate chain and of the host name (or IP address) in the URL.
 */
import * as NodeFs from "node:fs"

/** The driver's `ssl` option for `--pg-ca FILE`, or nothing (the URL's sslmode decides). */
export const options = (caFile: string | undefined): { readonly ssl?: { readonly ca: Buffer; readonly rejectUnauthorized: true } } =>
  caFile === undefined ? {} : { ssl: { ca: NodeFs.readFileSync(caFile), rejectUnauthorized: true } }
