// The golden ZODB fixtures (written by real ZODB and RelStorage, copied unchanged into test/data/zodb/;
// see its README.md). ZODB_FIXTURES_DIR points elsewhere (a regenerated set: never mix two sets).
import { fileURLToPath } from "node:url"

export const fixturesDir = process.env.ZODB_FIXTURES_DIR ?? fileURLToPath(new URL("../../data/zodb", import.meta.url))
