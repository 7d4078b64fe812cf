// The golden ZODB fixtures (written by real ZODB and RelStorage; see their README.md). They live outside
// the repository; ZODB_FIXTURES_DIR points elsewhere.
export const fixturesDir = process.env.ZODB_FIXTURES_DIR ?? "/work/shared/fixtures/zodb"
