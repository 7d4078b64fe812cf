/**
 * Which BTrees classes get the codec's flattened state (`@kv`, `@ks`, `@children`/`@first`, `@next`):
 * zodb-json-codec's `classify_btree`, by module prefix and class-name suffix only.
 */

export interface BTreeClass {
  /** BTree and TreeSet nodes hold children or one inline bucket; Bucket and Set hold items and a next link */
  readonly node: "tree" | "bucket"
  /** map (keys and values) or set (keys only) */
  readonly isMap: boolean
}

const TREE_MAP: BTreeClass = { node: "tree", isMap: true }
const BUCKET_MAP: BTreeClass = { node: "bucket", isMap: true }
const TREE_SET: BTreeClass = { node: "tree", isMap: false }
const BUCKET_SET: BTreeClass = { node: "bucket", isMap: false }

export const classifyBTree = (module: string, name: string): BTreeClass | undefined => {
  if (!module.startsWith("BTrees.") || module === "BTrees.Length") return undefined
  if (name.endsWith("BTree")) return TREE_MAP
  if (name.endsWith("Bucket")) return BUCKET_MAP
  if (name.endsWith("TreeSet")) return TREE_SET
  if (name.endsWith("Set")) return BUCKET_SET
  return undefined
}
