/**
 * TLS to PostgreSQL with libpq's `sslmode` meanings. The session's socket (PgSession.watchedSocket)
 * negotiates TLS itself (SSLRequest, then Node's TLS over the socket) and hands the driver the
 * plaintext, so that every mode means what it means in libpq:
 *
 * | sslmode | TLS | certificate checked |
 * |---|---|---|
 * | disable | never | - |
 * | allow, prefer (the default) | if the server offers it, else plaintext | chain, if a root certificate is known; else not at all |
 * | require | always (refused if the server has none) | chain, if a root certificate is known; else not at all |
 * | verify-ca | always | chain (root certificate, or Node's trusted CAs without one) |
 * | verify-full | always | chain and host name |
 *
 * The root certificate: `--pg-ca FILE`, else `sslrootcert`/PGSSLROOTCERT, else ~/.postgresql/root.crt if
 * present; `sslrootcert=system` is Node's trusted CAs. With `--pg-ca` and no sslmode, sslmode is verify-full.
 * Unix-domain sockets never use TLS (as libpq). Differences from libpq: `allow` tries TLS first (libpq
 * tries plaintext first), and verify-ca/verify-full without any root certificate use Node's trusted CAs
 * (libpq refuses to connect).
 */
import * as NodeFs from "node:fs"
import * as Net from "node:net"
import type * as Tls from "node:tls"
import type { Connection } from "./ConnectionString.ts"

/** The driver's `ssl` option for `--pg-ca FILE`, or nothing (for a driver used directly, e.g. in tests). */
export const options = (caFile: string | undefined): { readonly ssl?: { readonly ca: Buffer; readonly rejectUnauthorized: true } } =>
  caFile === undefined ? {} : { ssl: { ca: NodeFs.readFileSync(caFile), rejectUnauthorized: true } }

/** What a TCP session does about TLS. */
export interface TlsPlan {
  readonly sslmode: string
  /** false: plaintext when the server answers the SSLRequest with N */
  readonly required: boolean
  /** Node's options for tls.connect (without socket, host, servername) */
  readonly options: Tls.ConnectionOptions
  readonly sni: boolean
}

const noHostCheck = () => undefined

/** The TLS plan of a connection, or undefined for sslmode=disable. Reads the root certificate file. */
export const plan = (c: Connection): TlsPlan | undefined => {
  if (c.sslmode === "disable") return undefined
  let ca: Buffer | undefined
  if (c.sslrootcert !== undefined && c.sslrootcert !== "system") {
    try {
      ca = NodeFs.readFileSync(c.sslrootcert)
    } catch (e) {
      // libpq: a missing root file only matters when the mode verifies
      if (c.sslmode === "verify-ca" || c.sslmode === "verify-full" || c.sslrootcertGiven) {
        throw new Error(`cannot read the root certificate ${c.sslrootcert}: ${(e as Error).message}`)
      }
    }
  }
  const verifyChain = c.sslmode === "verify-ca" || c.sslmode === "verify-full" || ca !== undefined ||
    c.sslrootcert === "system"
  const versions = {
    ...(c.sslMinVersion === undefined ? { minVersion: "TLSv1.2" as const } : { minVersion: c.sslMinVersion as Tls.SecureVersion }),
    ...(c.sslMaxVersion === undefined ? {} : { maxVersion: c.sslMaxVersion as Tls.SecureVersion })
  }
  return {
    sslmode: c.sslmode,
    required: c.sslmode === "require" || c.sslmode === "verify-ca" || c.sslmode === "verify-full",
    sni: c.sslsni,
    options: {
      ...versions,
      ...(ca === undefined ? {} : { ca }),
      rejectUnauthorized: verifyChain,
      ...(c.sslmode === "verify-full" ? {} : { checkServerIdentity: noHostCheck })
    }
  }
}

/** The SNI name for `host` (none for an IP address, as TLS forbids). */
export const servername = (host: string, sni: boolean): string | undefined => sni && Net.isIP(host) === 0 ? host : undefined
