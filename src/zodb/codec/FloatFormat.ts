/**
 * Text forms of a finite double. Both start from the shortest digit string that reads back as the same
 * double (JavaScript's Number#toString digits, the same digits ryu and Python's repr choose); they differ
 * only in where they put the decimal point and how they write the exponent.
 */

/** The shortest round-trip digits of |x| (x finite, not 0) and `point`: value = 0.digits × 10^point. */
const shortestDigits = (x: number): { readonly digits: string; readonly point: number } => {
  const e = Math.abs(x).toExponential() // "d.ddde±x", shortest digits when no precision is given
  const at = e.indexOf("e")
  const mantissa = e.slice(0, at)
  const digits = mantissa.length === 1 ? mantissa : mantissa[0]! + mantissa.slice(2)
  return { digits, point: Number(e.slice(at + 1)) + 1 }
}

/**
 * Rust ryu's `format_finite`, which zodb-json-codec writes floats with: `1.0`, `12.5`, `0.001`,
 * `1e16`, `1.5e300`, `5e-324`, `-0.0`. Positional when the point falls within 16 digits, else
 * scientific with a bare exponent (no "+", no padding).
 */
export const ryuFormat = (x: number): string => {
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const sign = x < 0 ? "-" : ""
  const { digits, point: kk } = shortestDigits(x)
  const length = digits.length
  const k = kk - length
  if (k >= 0 && kk <= 16) return sign + digits + "0".repeat(k) + ".0"
  if (kk > 0 && kk <= 16) return sign + digits.slice(0, kk) + "." + digits.slice(kk)
  if (kk > -5 && kk <= 0) return sign + "0." + "0".repeat(-kk) + digits
  const mantissa = length === 1 ? digits : digits[0] + "." + digits.slice(1)
  return sign + mantissa + "e" + String(kk - 1)
}

/** True when ryuFormat writes `x` with a positive exponent (|x| ≥ 1e16): PostgreSQL's numeric then holds an integer. */
export const ryuIsIntegralExponent = (x: number): boolean => Number.isFinite(x) && Math.abs(x) >= 1e16

/**
 * The same value written positionally with a trailing ".0" (`10000000000000000.0`), for |x| ≥ 1e16:
 * jsonb keeps the scale of a numeric, so this comes back out of PostgreSQL with its ".0" and Python's
 * json.loads reads it as a float again (the ryu form `1e16` comes back as the integer 10000000000000000).
 */
export const positionalFloat = (x: number): string => {
  const sign = x < 0 ? "-" : ""
  const { digits, point } = shortestDigits(x)
  return sign + digits + "0".repeat(Math.max(0, point - digits.length)) + ".0"
}

/**
 * Python's float repr (what json.dumps writes for a float): `1.5`, `1.0`, `1e+16`, `1e-05`,
 * `1.5e+300`; exponential when the point is before the 4th decimal place or beyond the 16th digit.
 */
export const pythonFloatRepr = (x: number): string => {
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0"
  const sign = x < 0 ? "-" : ""
  const { digits, point } = shortestDigits(x)
  if (point <= -4 || point > 16) {
    const exp = point - 1
    const mantissa = digits.length === 1 ? digits : digits[0] + "." + digits.slice(1)
    return sign + mantissa + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0")
  }
  if (point <= 0) return sign + "0." + "0".repeat(-point) + digits
  if (point >= digits.length) return sign + digits + "0".repeat(point - digits.length) + ".0"
  return sign + digits.slice(0, point) + "." + digits.slice(point)
}
