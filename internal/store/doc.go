// Package store keeps pixelflow's durable state in MongoDB: the painted pixels,
// the transactional outbox, the sequencer lease and idempotency records.
//
// It speaks the driver API through lungo's interfaces, so one implementation
// serves a real replica set (lungo.Connect) and the embedded engine
// (lungo.Open, memory or single file). Every multi-document change runs in a
// transaction through Store.txn, which retries MongoDB's transient errors with
// a bounded budget itself (exponential backoff with jitter): lungo's
// WithTransaction runs only once, and the driver's own retry loop would hide
// the retries from our metrics and tests.
//
// Concurrency: a Store is safe for concurrent use. Place shares transactions
// between concurrent callers (Options.GroupCommit): one upsert per tile and
// one outbox insert per batch, an answer per caller, one batch in flight at
// a time, and a failed transaction fails every caller in it with nothing
// written. On the embedded engine, which runs one write transaction at a
// time and pays for every write operation (it copies the collection and its
// oplog), that is what lets it keep up. On MongoDB it is what keeps a hot
// tile writable, see below.
//
// # On a real replica set
//
// What runs there, and why, beyond what the embedded engine exercises:
//
//   - Read and write concerns are explicit, not the deployment's defaults.
//     Transactions (placing, claiming, marking, the lease, a new epoch) use
//     read concern snapshot and write concern majority on the primary: a
//     transaction reads one snapshot of majority-committed data, and its
//     commit is acknowledged only once a failover cannot roll it back, so
//     the relay never claims, and never publishes, a placement that a
//     failover then undoes. Everything outside a transaction (the snapshot,
//     the relay's reads of pending and published events, /metrics, the
//     lease release, the canary) uses read and write concern majority on the
//     database. The embedded engine has one copy and ignores them; the
//     options are checked by TestReadAndWriteConcernsAreExplicit.
//   - Every query has an index by the equality-sort-range rule, so nothing
//     scans the outbox (which holds RETENTION's worth of published events)
//     or sorts it in memory; TestEveryQueryIsIndexed records each filter and
//     sort while running every operation and checks it against the indexes.
//     The embedded engine scans for every query whatever its indexes and
//     updates every index on each write, so it has none of these (only _id
//     and the TTL indexes); TestEmbeddedEngineKeepsNoQueryIndexes.
//   - TTL indexes (RETENTION, the idempotency TTL) are changed in place with
//     collMod when the setting changes (ensureTTL); lungo, which has no
//     commands, drops and recreates them.
//   - Write conflicts. Pixels are stored 16×16 to a document, so concurrent
//     transactions writing different pixels of one tile conflict on MongoDB
//     (WriteConflict, TransientTransactionError) where the embedded engine,
//     one transaction at a time, never does. Group commit means one process
//     never has two placement transactions in flight, so it never conflicts
//     with itself; conflicts between API processes are retried by txn with
//     jittered backoff. Options.Conflicts models these conflicts on the
//     embedded engine; BenchmarkHotTile measures writes/s and 503s to one
//     tile with it (figures in docs/benchmarks.md).
//
// Failpoints: Options.Failpoint is called at named places inside
// transactions ("place:after-pixel", "txn:commit", "mark:before-commit"), so
// tests can inject the failures real MongoDB produces and lungo never does;
// Options.Conflicts injects write conflicts by a conflict model.
package store
