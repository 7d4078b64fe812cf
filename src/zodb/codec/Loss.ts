/**
 * What zodb-json-codec's output loses for one record: information that PostgreSQL and zodb-pgjsonb's
 * loader (which turns the row back into a pickle through the codec's encoder) cannot give back.
 * docs/zodb-codec.md describes each reason and the form the "faithful" mode writes instead.
 */

export type LossReason =
  /** class metadata the codec or the loader gets wrong: (class, newargs) gives class_mod/class_name "" */
  | "class-lost"
  /** bare-oid persistent references (classes with __getnewargs__): missing from the codec's refs */
  | "bare-oid-ref"
  /** persistent weak references ["w", (oid, ...)]: missing from the codec's refs, and its JSON makes the loader fail */
  | "weak-ref"
  /** NaN / ±inf written as null */
  | "float-nan-inf"
  /** |float| ≥ 1e16 written as 1e16: jsonb keeps the numeric as an integer, the loader gives an int (or fails beyond i64) */
  | "float-integral"
  /** -0.0: jsonb numeric has no negative zero */
  | "float-negative-zero"
  /** a mutable object referenced twice in the record (pickle memo) comes out as separate copies */
  | "shared-object"
  /** a datetime/time with pytz.utc is written like datetime.timezone.utc */
  | "pytz-utc"
  /** a datetime/time tz offset with seconds or microseconds: the codec writes only hours and minutes */
  | "tz-offset-seconds"
  /** a dict key holding "\0": the codec's "@ns:" key is not reversed by the loader */
  | "nul-key"
  /** a str-keyed dict whose keys look like the codec's markers ("@t", "@ref"...): the loader misreads it */
  | "marker-key"
  /** items set / appended on an object (OrderedDict, defaultdict, dict/list subclasses): the loader drops them */
  | "object-items"
  /** an object built with arguments (NEWOBJ / REDUCE args) and a state: the loader drops the arguments */
  | "object-args"
  /** a Python 2 str (SHORT_BINSTRING...): read as bytes, while ZODB on Python 3 reads ASCII ones as str */
  | "py2-str"
  /** the codec reads a protocol-0 STRING / UNICODE differently from Python (it does not unescape) */
  | "codec-misreads"
  /** zodb-json-codec refuses this record (zodb-pgjsonb could not migrate it); the faithful form is written */
  | "codec-rejects"

export interface Loss {
  readonly reason: LossReason
  /** what and where, readable */
  readonly detail: string
  /** true when the output of this decode (state, refs and class in the chosen mode) does not lose it */
  readonly repaired: boolean
}
