// Package store keeps pixelflow's durable state in MongoDB: the painted pixels,
// the transactional outbox, the sequencer lease and idempotency records.
//
// It speaks the driver API through lungo's interfaces, so one implementation
// serves a real replica set (lungo.Connect) and the embedded engine
// (lungo.Open, memory or single file). Every multi-document change runs in a
// transaction through Store.txn, which retries MongoDB's transient errors with
// a bounded budget itself: lungo's WithTransaction runs only once, and the
// driver's own retry loop would hide the retries from our metrics and tests.
//
// Concurrency: a Store is safe for concurrent use. On the embedded engine
// write transactions are serialized by lungo; on MongoDB concurrent
// transactions touching the same documents conflict and are retried.
// Because the embedded engine runs one write transaction at a time and pays
// for every write operation (it copies the collection and its oplog), Place
// there shares transactions between concurrent callers (Options.GroupCommit):
// one upsert per tile and one outbox insert per batch, an answer per caller,
// and a failed transaction fails every caller in it with nothing written.
//
// Failpoints: Options.Failpoint is called at named places inside
// transactions ("place:after-pixel", "txn:commit", "mark:before-commit"), so
// tests can inject the failures real MongoDB produces and lungo never does.
package store
