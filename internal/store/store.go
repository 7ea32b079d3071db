package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/readconcern"
	"go.mongodb.org/mongo-driver/mongo/readpref"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"
	"go.opentelemetry.io/contrib/instrumentation/go.mongodb.org/mongo-driver/mongo/otelmongo"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/backoff"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/dirlock"
	"github.com/pixelflow/pixelflow/internal/option"
)

// Collection names.
const (
	cPixels     = "pixels"
	cOutbox     = "outbox"
	cSequencers = "sequencers"
	cIdemKeys   = "idempotency_keys" // bucket documents, see idempotency.go
	cBatches    = "batches"
	// cIdempotency held one document per key in earlier versions; nothing
	// writes it now, and its TTL index expires what they left behind.
	cIdempotency = "idempotency"
)

// Outbox states.
const (
	statePending   = "pending"
	statePublished = "published"
)

// Options configure a Store.
type Options struct {
	// Canvas names the canvas this store serves: several canvases can share
	// one database. Default canvas.DefaultName.
	Canvas string
	// Retention is how long published outbox events are kept (TTL index on
	// publishedAt, whole seconds); it is also the window republished after
	// Redis forgets. Default DefaultRetention. With PruneOnPublish it is
	// unused.
	Retention time.Duration
	// PruneOnPublish deletes events as soon as they are published. The
	// embedded engine copies a collection on every write to it, so its outbox
	// must hold little more than the backlog; after Redis loses its data,
	// clients then recover from the snapshot (resync) rather than a replay.
	PruneOnPublish bool
	// IdempotencyTTL is how long an Idempotency-Key is remembered. Default 24h.
	IdempotencyTTL time.Duration
	// IdempotencyKeysPerClient bounds the keys one client holds (its oldest
	// are forgotten first), rounded up to a multiple of 64: at least 64.
	// Changing it never moves a key (see idempotency.go). Default 1024.
	IdempotencyKeysPerClient int
	// IdempotencyBuckets is how many documents hold the keys. Default 256.
	// A key's bucket is its hash modulo this number, so changing it moves
	// nearly every key (their retries are written again): it is no
	// setting of the binary.
	IdempotencyBuckets int
	// GroupCommit is how many concurrent placements at most share one
	// transaction (see groupCommit); one batch is written at a time.
	// Default 64; negative: every placement is its own transaction.
	//
	// Both stores need it. The embedded engine serializes its write
	// transactions and pays per transaction and per write operation, so
	// sharing them is what lets it keep up. On MongoDB concurrent
	// transactions that write one tile document (different pixels of one
	// 16×16 tile) conflict (WriteConflict): placements to a hot tile, each in
	// its own transaction, abort each other and run out of retries (503).
	// With one batch in flight per process, a process never conflicts with
	// itself (BenchmarkHotTile).
	GroupCommit int
	// TxnAttempts bounds how often a transaction is tried on transient
	// errors (write conflicts with another process, failovers), with
	// exponential backoff and jitter between attempts. Default 10.
	TxnAttempts int
	// Failpoint, when set, is called at named places; a non-nil error is
	// returned from that place as if MongoDB had raised it. For tests.
	Failpoint func(name string) error
	// Conflicts, when set, models MongoDB's write conflicts on the embedded
	// engine (see ConflictModel). For tests and benchmarks.
	Conflicts ConflictModel
	// Logger receives retry and pruning messages. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Tracer, when set, traces MongoDB commands through the driver's
	// monitor (otelmongo). The embedded engine has no driver underneath:
	// callers' own spans around store calls stand in for it.
	Tracer trace.TracerProvider
	// NoIndexes opens the store without creating or changing any index,
	// for readers of a database that a running deployment owns (the e2e
	// verification): the owner's TTLs (Retention, IdempotencyTTL) are not
	// this reader's to set, and MongoDB rejects a same-named index with
	// other options (IndexOptionsConflict).
	NoIndexes bool
}

// Store is pixelflow's MongoDB (or embedded) persistence.
type Store struct {
	client lungo.IClient
	db     lungo.IDatabase
	opts   Options
	close  func(context.Context) error

	retries atomic.Int64 // transactions retried after a transient error

	places *groupCommit[*placeReq] // nil without Options.GroupCommit

	// indexEmbedded makes the embedded engine create the query indexes as
	// MongoDB does (for the test of that path; see ensureIndexes).
	indexEmbedded bool
	// idemGroupsBySetting restores the old idempotency grouping, whose
	// number of groups (and so a key's bucket) followed
	// IdempotencyKeysPerClient below 64: the defect that
	// TestKeyHomeScenarioHasTeeth must catch.
	idemGroupsBySetting bool
}

// Open connects to uri ("mongodb://…" for a replica set) or, with an empty
// uri, opens the embedded engine: a single file at path, or memory when path
// is empty.
func Open(ctx context.Context, uri, path string, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if uri != "" {
		client, closeFn, err := Connect(ctx, uri, opts.Tracer)
		if err != nil {
			return nil, err
		}
		return New(ctx, client, dbName(uri), closeFn, opts)
	}
	client, closeFn, err := OpenEngine(ctx, path)
	if err != nil {
		return nil, err
	}
	return New(ctx, client, "pixelflow", closeFn, opts)
}

// Connect connects to the MongoDB replica set at uri and checks that its
// primary answers; closeFn disconnects. tracer (may be nil) traces the
// driver's commands.
func Connect(ctx context.Context, uri string, tracer trace.TracerProvider) (client lungo.IClient, closeFn func(context.Context) error, err error) {
	co := options.Client().ApplyURI(uri).SetServerSelectionTimeout(5 * time.Second).SetTimeout(10 * time.Second)
	if tracer != nil {
		co.SetMonitor(otelmongo.NewMonitor(otelmongo.WithTracerProvider(tracer)))
	}
	c, err := lungo.Connect(ctx, co)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to MongoDB: %w", err)
	}
	if err := c.Ping(ctx, readpref.Primary()); err != nil {
		_ = c.Disconnect(ctx)
		return nil, nil, fmt.Errorf("ping MongoDB: %w", err)
	}
	return c, c.Disconnect, nil
}

// OpenEngine opens the embedded engine, tuned as pixelflow runs it: a
// single file at path, or memory when path is empty. closeFn closes it.
//
// A file is opened by one engine at a time: each engine holds the whole
// catalog in memory and writes it to the file (and its journal), so two of
// them would each acknowledge writes that the other's next compaction
// discards. The binary's DATA_DIR lock guards only two binaries; so the
// engine takes an exclusive flock on a sidecar, path+LockSuffix (the file
// itself is replaced by rename on every compaction, and a lock on it would
// stay with the old inode), and a second open of the same path, in this process or
// another, fails naming the file and the holder's pid. closeFn releases it
// after the engine stopped committing.
func OpenEngine(ctx context.Context, path string) (client lungo.IClient, closeFn func(context.Context) error, err error) {
	client, _, closeFn, err = openEngine(ctx, path, lungo.FileStoreOptions{})
	return client, closeFn, err
}

// openEngine is OpenEngine with the file store's options (tests set its
// crash hooks and compaction size), also returning the file store (nil in
// memory).
//
// The file is a main file and a journal, path+lungo.JournalSuffix (lungo
// patch 10): a commit appends what it changed, so its cost follows the
// commit, not the database (30,000 idempotency keys made a keyed write
// rewrite 6 MB). Releases before the journal refuse the main file (see
// docs/operations.md, Upgrades).
func openEngine(ctx context.Context, path string, fopts lungo.FileStoreOptions) (client lungo.IClient, fs *lungo.FileStore, closeFn func(context.Context) error, err error) {
	var st lungo.Store = lungo.NewMemoryStore()
	var lock *dirlock.Lock
	if path != "" {
		if lock, err = dirlock.AcquireFile(path + LockSuffix); err != nil {
			var le *dirlock.LockedError
			if errors.As(err, &le) {
				return nil, nil, nil, fmt.Errorf("open embedded store %q: already open: %w", path, err)
			}
			return nil, nil, nil, fmt.Errorf("open embedded store %q: %w", path, err)
		}
		fs = lungo.NewFileStoreWith(path, 0o644, fopts)
		st = fs
	}
	c, engine, err := lungo.Open(ctx, engineOptions(st))
	if err != nil {
		_ = lock.Release()
		return nil, nil, nil, fmt.Errorf("open embedded store %q: %w", path, err)
	}
	return c, fs, func(context.Context) error {
		engine.Close() // waits for a commit in progress: nothing writes the file after it
		if err := lock.Release(); err != nil {
			return fmt.Errorf("release embedded store lock %s: %w", path+LockSuffix, err)
		}
		return nil
	}, nil
}

// LockSuffix names the lock file next to an embedded store file.
const LockSuffix = ".lock"

// engineOptions are the embedded engine's options over store st.
func engineOptions(st lungo.Store) lungo.Options {
	return lungo.Options{
		Store:          st,
		ExpireInterval: 5 * time.Second,
		// Every write clones the oplog (the engine's copy-on-write), so a
		// long one makes every write slow. The change stream is only a
		// wake-up signal; when it falls off this short oplog the relay
		// re-watches and its poll covers the gap. lungo ages entries in
		// whole seconds and keeps every entry younger than MinOplogAge
		// whatever the sizes say: at 1s that is 1-2 s of writes (thousands
		// of entries under load, each copied on every write operation);
		// the smallest age keeps only the current second's.
		MinOplogSize: 16,
		MaxOplogSize: 128,
		MinOplogAge:  time.Nanosecond,
		MaxOplogAge:  time.Minute,
		// Only the outbox is watched (WatchOutbox): a write elsewhere
		// (a tile, the sequencer, idempotency keys) logged in the oplog
		// was a converted change event and an oplog copy that nobody
		// read, about a sixth of a placement's allocations with its
		// claim and mark (lungo patch 9).
		Logged:       func(h lungo.Handle) bool { return h[1] == cOutbox },
		ExpireErrors: func(err error) { slog.Warn("embedded store expiry", "err", err) },
	}
}

func dbName(uri string) string {
	cs := uri
	if i := strings.Index(cs, "://"); i >= 0 {
		cs = cs[i+3:]
	}
	if i := strings.IndexByte(cs, '/'); i >= 0 {
		name := cs[i+1:]
		if j := strings.IndexByte(name, '?'); j >= 0 {
			name = name[:j]
		}
		if name != "" {
			return name
		}
	}
	return "pixelflow"
}

// Retention defaults (config takes its defaults from here: one default per
// setting).
const (
	// DefaultRetention keeps a week of published events on MongoDB.
	DefaultRetention = 7 * 24 * time.Hour
	// EmbeddedRetention is the embedded store's: it copies a collection on
	// every write, so its outbox must stay small.
	EmbeddedRetention = 30 * time.Second
)

func (o *Options) setDefaults() {
	if o.Canvas == "" {
		o.Canvas = canvas.DefaultName
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.IdempotencyTTL == 0 {
		o.IdempotencyTTL = 24 * time.Hour
	}
	if o.IdempotencyKeysPerClient <= 0 {
		o.IdempotencyKeysPerClient = 1024
	}
	if o.IdempotencyBuckets <= 0 {
		o.IdempotencyBuckets = 256
	}
	if o.TxnAttempts == 0 {
		o.TxnAttempts = 10
	}
	if o.GroupCommit == 0 {
		o.GroupCommit = 64
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate refuses options the store cannot run with (zero values stand
// for their defaults). New calls it; so does config.Parse, before anything
// opens.
func (o Options) Validate() error {
	o.setDefaults()
	c := option.Checker{Component: "store"}
	c.Name("Canvas", o.Canvas, canvas.ValidateName)
	// TTL indexes count whole seconds, and 0 would expire at once.
	c.Check(o.Retention >= time.Second, "Retention", o.Retention, "must be at least 1s")
	c.Check(o.IdempotencyTTL >= time.Second, "IdempotencyTTL", o.IdempotencyTTL, "must be at least 1s")
	c.Check(o.TxnAttempts >= 1, "TxnAttempts", o.TxnAttempts, "must be positive")
	return c.Err()
}

// New wraps a connected client and ensures the indexes exist. It closes
// the client (closeFn) when it fails.
func New(ctx context.Context, client lungo.IClient, db string, closeFn func(context.Context) error, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		_ = closeFn(ctx)
		return nil, err
	}
	opts.setDefaults()
	s := &Store{client: client, db: client.Database(db, databaseOptions()), opts: opts, close: closeFn}
	if opts.GroupCommit > 0 {
		s.places = newGroupCommit(opts.GroupCommit, s.runPlaces)
	}
	if err := s.ensureIndexes(ctx); err != nil {
		_ = closeFn(ctx)
		return nil, err
	}
	return s, nil
}

// Close releases the connection or engine.
func (s *Store) Close(ctx context.Context) error { return s.close(ctx) }

// Canvas returns the canvas name.
func (s *Store) Canvas() string { return s.opts.Canvas }

// Retries returns how many transaction attempts were retried so far.
func (s *Store) Retries() int64 { return s.retries.Load() }

// Ping checks the store answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.client.Ping(ctx, readpref.Primary()); err != nil {
		return unavailable("ping store", err)
	}
	return nil
}

// queryIndexes are the indexes that serve the queries of the API, the
// relay and /metrics on MongoDB, by its equality-sort-range rule
// (TestEveryQueryIsIndexed).
func queryIndexes() []collIndex {
	return []collIndex{
		// Every outbox query is by canvas (canvases may share a database),
		// so canvas leads each index.
		// pending events in claim order (Pending, the claim and its tagging)
		{cOutbox, bson.D{{Key: "canvas", Value: 1}, {Key: "state", Value: 1}, {Key: "version", Value: 1}, {Key: "committedAt", Value: 1}, {Key: "_id", Value: 1}}},
		// the oldest pending event (Backlog, /metrics, /api/health)
		{cOutbox, bson.D{{Key: "canvas", Value: 1}, {Key: "state", Value: 1}, {Key: "committedAt", Value: 1}}},
		// published events inside the republish window (Requeue)
		{cOutbox, bson.D{{Key: "canvas", Value: 1}, {Key: "state", Value: 1}, {Key: "publishedAt", Value: 1}}},
		// a large claim's events (ClaimEvents, marking; see tagAbove)
		{cOutbox, bson.D{{Key: "claim", Value: 1}}},
		{cPixels, bson.D{{Key: "canvas", Value: 1}}},
		// the batches overlapping a range of sequence numbers, in order
		{cBatches, bson.D{{Key: "canvas", Value: 1}, {Key: "epoch", Value: 1}, {Key: "first", Value: 1}, {Key: "last", Value: 1}}},
	}
}

// collIndex is an index's collection and keys.
type collIndex struct {
	coll string
	keys bson.D
}

// onMongoDB reports whether the store runs on MongoDB, not the embedded
// engine.
func (s *Store) onMongoDB() bool {
	_, ok := s.client.(*lungo.MongoClient)
	return ok
}

func (s *Store) ensureIndexes(ctx context.Context) error {
	if s.opts.NoIndexes {
		return nil
	}
	// The embedded engine scans a collection for every query whatever its
	// indexes (it uses them only for uniqueness and expiry), and keeps
	// every index up to date on each write: there the query indexes are
	// pure cost, 22 % of a placement's allocations with its claim and mark
	// (BenchmarkPlacePaintedFolded), so it has none and drops those an
	// earlier version made.
	if !s.onMongoDB() && !s.indexEmbedded {
		if err := s.dropQueryIndexes(ctx); err != nil {
			return err
		}
	} else {
		for _, i := range queryIndexes() {
			if _, err := s.db.Collection(i.coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: i.keys}); err != nil {
				return unavailable("create index on "+i.coll, err)
			}
		}
	}
	// Indexes of earlier versions that the ones above replace: each is a
	// prefix of, or sorts less than, its successor, and costs every write.
	for coll, names := range map[string][]string{
		cOutbox:  {"state_1_version_1", "state_1_version_1_committedAt_1__id_1", "state_1_committedAt_1", "state_1_publishedAt_1"},
		cBatches: {"epoch_1_last_1", "epoch_1_first_1_last_1"},
	} {
		if err := s.dropIndexes(ctx, coll, names...); err != nil {
			return err
		}
	}
	ttl := []struct {
		coll, field string
		ttl         time.Duration
	}{
		{cOutbox, "publishedAt", s.opts.Retention},
		{cBatches, "publishedAt", s.opts.Retention},
		{cIdempotency, "createdAt", s.opts.IdempotencyTTL},
	}
	for _, i := range ttl {
		if err := s.ensureTTL(ctx, i.coll, i.field, i.ttl); err != nil {
			return err
		}
	}
	return nil
}

// dropQueryIndexes drops those of queryIndexes that the collections have.
func (s *Store) dropQueryIndexes(ctx context.Context) error {
	byColl := map[string][]bson.D{}
	for _, i := range queryIndexes() {
		byColl[i.coll] = append(byColl[i.coll], i.keys)
	}
	for coll, keys := range byColl {
		specs, err := s.listIndexes(ctx, coll)
		if err != nil {
			return err
		}
		for _, sp := range specs {
			if sp.TTL != nil || !slices.ContainsFunc(keys, func(k bson.D) bool { return sameKeys(k, sp.Key) }) {
				continue
			}
			if _, err := s.db.Collection(coll).Indexes().DropOne(ctx, sp.Name); err != nil {
				return unavailable("drop index "+sp.Name+" on "+coll, err)
			}
		}
	}
	return nil
}

// sameKeys reports whether two index key documents name the same fields in
// the same order and directions (a listed direction may decode as another
// number type).
func sameKeys(a, b bson.D) bool {
	return slices.EqualFunc(a, b, func(x, y bson.E) bool { return x.Key == y.Key && fmt.Sprint(x.Value) == fmt.Sprint(y.Value) })
}

// dropIndexes drops those of the named indexes coll has.
func (s *Store) dropIndexes(ctx context.Context, coll string, names ...string) error {
	specs, err := s.listIndexes(ctx, coll)
	if err != nil {
		return err
	}
	for _, sp := range specs {
		if slices.Contains(names, sp.Name) {
			if _, err := s.db.Collection(coll).Indexes().DropOne(ctx, sp.Name); err != nil {
				return unavailable("drop index "+sp.Name+" on "+coll, err)
			}
		}
	}
	return nil
}

// indexSpec is one entry of listIndexes.
type indexSpec struct {
	Name string `bson:"name"`
	Key  bson.D `bson:"key"`
	// TTL is expireAfterSeconds: MongoDB may store it as int32, int64 or
	// double, all of which decode into a float64.
	TTL *float64 `bson:"expireAfterSeconds"`
}

func (s *Store) listIndexes(ctx context.Context, coll string) ([]indexSpec, error) {
	cur, err := s.db.Collection(coll).Indexes().List(ctx)
	if err != nil {
		return nil, unavailable("list indexes of "+coll, err)
	}
	var specs []indexSpec
	if err := cur.All(ctx, &specs); err != nil {
		return nil, unavailable("list indexes of "+coll, err)
	}
	return specs, nil
}

// ensureTTL makes coll's TTL index on field expire documents ttl after it.
//
// CreateOne cannot change an existing index: for the same key with another
// expireAfterSeconds MongoDB answers IndexOptionsConflict (code 85) and lungo
// "existing index … has same key", and startup failed whenever RETENTION or
// the idempotency TTL changed. So the setting is applied here, at the next
// start:
//   - MongoDB: collMod changes expireAfterSeconds of the index in place (the
//     index stays and keeps serving queries; the TTL monitor uses the new
//     value from its next pass). Several processes starting at once all
//     send the same collMod, which is idempotent.
//   - lungo has no commands (its RunCommand panics), so the index is dropped
//     and created again; a crash between the two leaves no index, which the
//     next start creates.
func (s *Store) ensureTTL(ctx context.Context, coll, field string, ttl time.Duration) error {
	secs := int32(ttl / time.Second)
	specs, err := s.listIndexes(ctx, coll)
	if err != nil {
		return err
	}
	var old *indexSpec
	for i, sp := range specs {
		if len(sp.Key) == 1 && sp.Key[0].Key == field {
			old = &specs[i]
		}
	}
	keys := bson.D{{Key: field, Value: 1}}
	create := func() error {
		_, err := s.db.Collection(coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys, Options: options.Index().SetExpireAfterSeconds(secs)})
		if err != nil {
			return unavailable("create TTL index on "+coll+"."+field, err)
		}
		return nil
	}
	switch {
	case old == nil:
		return create()
	case old.TTL != nil && *old.TTL == float64(secs):
		return nil
	}
	was := "none"
	if old.TTL != nil {
		was = strconv.FormatFloat(*old.TTL, 'f', -1, 64) + "s"
	}
	s.opts.Logger.Info("changing TTL index", "collection", coll, "field", field, "from", was, "to", strconv.Itoa(int(secs))+"s")
	if !s.onMongoDB() {
		if _, err := s.db.Collection(coll).Indexes().DropOne(ctx, old.Name); err != nil {
			return unavailable("drop TTL index "+old.Name+" on "+coll, err)
		}
		return create()
	}
	err = s.db.RunCommand(ctx, bson.D{
		{Key: "collMod", Value: coll},
		{Key: "index", Value: bson.D{{Key: "keyPattern", Value: keys}, {Key: "expireAfterSeconds", Value: secs}}},
	}).Err()
	if err != nil {
		return unavailable("collMod TTL index on "+coll+"."+field, err)
	}
	return nil
}

// failpoint returns the injected error for name, if any.
func (s *Store) failpoint(name string) error {
	if s.opts.Failpoint == nil {
		return nil
	}
	return s.opts.Failpoint(name)
}

// labeled is the part of the driver's errors that carries retry labels.
type labeled interface{ HasErrorLabel(string) bool }

func hasLabel(err error, label string) bool {
	var l labeled
	return errors.As(err, &l) && l.HasErrorLabel(label)
}

// databaseOptions are the read and write concerns of every operation outside
// a transaction: the snapshot's reads, the relay's reads of pending and
// published events and of the sequencer, the lease release, the canary.
// Majority on both, set explicitly rather than left to the deployment's
// defaults: a read never returns a write that a failover can roll back (the
// snapshot would show, and the relay republish, a pixel that then vanishes),
// and an acknowledged write survives a failover. The embedded engine has one
// copy and ignores both.
func databaseOptions() *options.DatabaseOptions {
	return options.Database().SetReadConcern(readconcern.Majority()).SetWriteConcern(writeconcern.Majority())
}

// sessionOptions are the defaults of the transactions started on a session
// (txnOptions repeats them on each transaction): read concern snapshot, so a
// transaction reads one consistent snapshot of majority-committed data once
// it commits with write concern majority — the claim never sees a placement
// that could still be rolled back, the commit is acknowledged only when a
// failover cannot undo it — and the primary, the only node that runs
// transactions.
func sessionOptions() *options.SessionOptions {
	return options.Session().
		SetDefaultReadConcern(readconcern.Snapshot()).
		SetDefaultWriteConcern(writeconcern.Majority()).
		SetDefaultReadPreference(readpref.Primary())
}

func txnOptions() *options.TransactionOptions {
	return options.Transaction().
		SetReadConcern(readconcern.Snapshot()).
		SetWriteConcern(writeconcern.Majority()).
		SetReadPreference(readpref.Primary())
}

// txn runs fn in a transaction. A TransientTransactionError restarts the whole
// transaction and an UnknownTransactionCommitResult retries the commit, both
// within opts.TxnAttempts. Restarts wait 1–2 ms, then twice as long each
// time up to 250 ms, half of it random: transactions of two processes that
// conflicted on a document do not meet again in lockstep, and the budget (at
// most about 0.9 s over 10 attempts) outlasts a burst of conflicts on a hot
// tile (BenchmarkHotTile: with a 100 ms cap, two saturated processes still
// answered a few 503s) without holding a request for long. fn must be idempotent over retries: its
// writes are discarded with the aborted attempt.
func (s *Store) txn(ctx context.Context, name string, fn func(sc lungo.ISessionContext) error) error {
	sess, err := s.client.StartSession(sessionOptions())
	if err != nil {
		return unavailable(name+": start session", err)
	}
	defer sess.EndSession(context.Background())
	var lastErr error
	var bo backoff.Backoff
	for attempt := 0; attempt < s.opts.TxnAttempts; attempt++ {
		if attempt > 0 {
			s.retries.Add(1)
			s.opts.Logger.Warn("retrying transaction", "txn", name, "attempt", attempt+1, "err", lastErr)
			select {
			case <-ctx.Done():
				return unavailable(name, ctx.Err())
			case <-time.After(bo.Next(2*time.Millisecond, 250*time.Millisecond)):
			}
		}
		actx, att := s.beginAttempt(ctx)
		lastErr = lungo.WithSession(actx, sess, func(sc lungo.ISessionContext) error {
			if err := sess.StartTransaction(txnOptions()); err != nil {
				return err
			}
			if err := fn(sc); err != nil {
				_ = sess.AbortTransaction(context.Background())
				return err
			}
			for {
				err := s.failpoint("txn:commit")
				if err == nil {
					err = sess.CommitTransaction(sc)
				}
				if err == nil || !hasLabel(err, "UnknownTransactionCommitResult") || attempt >= s.opts.TxnAttempts-1 {
					if err != nil {
						_ = sess.AbortTransaction(context.Background())
					}
					return err
				}
				attempt++
				s.retries.Add(1)
				s.opts.Logger.Warn("retrying commit", "txn", name, "attempt", attempt+1, "err", err)
			}
		})
		if att != nil {
			att.End(lastErr == nil)
		}
		if lastErr == nil {
			return nil
		}
		if !hasLabel(lastErr, "TransientTransactionError") {
			break
		}
	}
	var ce *canvas.Error
	if errors.As(lastErr, &ce) {
		return lastErr
	}
	return unavailable(name, lastErr)
}

// unavailable wraps a store failure: callers answer 503 for it, and the
// message names the operation without leaking driver internals.
func unavailable(op string, err error) error {
	var ce *canvas.Error
	if errors.As(err, &ce) || errors.Is(err, ErrLeaseLost) {
		return err
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w", op, err)
	}
	return &storeError{op: op, err: err}
}

type storeError struct {
	op  string
	err error
}

func (e *storeError) Error() string { return "store: " + e.op + ": " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// As lets canvas.ErrorCode classify store failures as unavailable.
func (e *storeError) As(target any) bool {
	if t, ok := target.(**canvas.Error); ok {
		*t = canvas.Errorf(canvas.EUnavailable, "the pixel store is unavailable, try again shortly")
		return true
	}
	return false
}

// tileSize is the side of a tile: pixels are stored 16×16 to a document.
// The embedded engine clones a collection on every write, so a 64×64 canvas
// costs 16 documents per clone instead of 4,096; on MongoDB a tile is a
// small document and writes to different pixels of it touch different fields.
const tileSize = 16

// tileDoc holds the painted pixels of one tile, keyed by their index inside
// the tile ("0".."255"); unpainted pixels are absent.
type tileDoc struct {
	ID     string               `bson:"_id"`
	Canvas string               `bson:"canvas"`
	TX     int                  `bson:"tx"`
	TY     int                  `bson:"ty"`
	P      map[string]tilePixel `bson:"p"`
}

type tilePixel struct {
	Color     string    `bson:"c"`
	Version   int64     `bson:"v"`
	UpdatedAt time.Time `bson:"t"`
}

// tileOf returns the tile id and the pixel's key inside it.
func tileOf(canvasName string, gx, gy int) (id string, tx, ty int, key string) {
	tx, ty = gx/tileSize, gy/tileSize
	return fmt.Sprintf("%s/%d/%d", canvasName, tx, ty), tx, ty, strconv.Itoa((gy%tileSize)*tileSize + gx%tileSize)
}

// outboxDoc is one event waiting for, or after, publication.
type outboxDoc struct {
	ID          primitive.ObjectID `bson:"_id"`
	Canvas      string             `bson:"canvas"`
	Kind        string             `bson:"kind"`
	GX          int                `bson:"gx"`
	GY          int                `bson:"gy"`
	Color       string             `bson:"color"`
	Version     int64              `bson:"version"`
	CommittedAt time.Time          `bson:"committedAt"`
	Trace       traceDoc           `bson:"trace"`
	State       string             `bson:"state"`
	Claim       string             `bson:"claim,omitempty"`
	Epoch       string             `bson:"epoch,omitempty"`
	PublishedAt *time.Time         `bson:"publishedAt,omitempty"`
}

type traceDoc struct {
	TraceParent string `bson:"traceparent,omitempty"`
	TraceState  string `bson:"tracestate,omitempty"`
}

// doc is d as the driver would encode it (same fields, order, types and
// omissions; TestOutboxDocEncodesAsItsStruct holds it to that), built as a
// document of plain values: the embedded engine converts those directly,
// where a struct costs it a marshal round trip on every placement. Every
// outbox insert (placements, canaries) goes through it.
func (d outboxDoc) doc() bson.D {
	tr := bson.D{}
	if d.Trace.TraceParent != "" {
		tr = append(tr, bson.E{Key: "traceparent", Value: d.Trace.TraceParent})
	}
	if d.Trace.TraceState != "" {
		tr = append(tr, bson.E{Key: "tracestate", Value: d.Trace.TraceState})
	}
	doc := bson.D{
		{Key: "_id", Value: d.ID}, {Key: "canvas", Value: d.Canvas}, {Key: "kind", Value: d.Kind},
		{Key: "gx", Value: d.GX}, {Key: "gy", Value: d.GY}, {Key: "color", Value: d.Color},
		{Key: "version", Value: d.Version}, {Key: "committedAt", Value: d.CommittedAt},
		{Key: "trace", Value: tr}, {Key: "state", Value: d.State},
	}
	if d.Claim != "" {
		doc = append(doc, bson.E{Key: "claim", Value: d.Claim})
	}
	if d.Epoch != "" {
		doc = append(doc, bson.E{Key: "epoch", Value: d.Epoch})
	}
	if d.PublishedAt != nil {
		doc = append(doc, bson.E{Key: "publishedAt", Value: *d.PublishedAt})
	}
	return doc
}

func (d outboxDoc) event() (canvas.Event, error) {
	c, err := canvas.ParseColor(d.Color)
	if err != nil {
		return canvas.Event{}, fmt.Errorf("outbox %s: %w", d.ID.Hex(), err)
	}
	return canvas.Event{
		ID: d.ID.Hex(), Kind: canvas.Kind(d.Kind), GX: d.GX, GY: d.GY, Color: c,
		Version: d.Version, CommittedAt: d.CommittedAt,
		TraceParent: d.Trace.TraceParent, TraceState: d.Trace.TraceState,
		Epoch: d.Epoch,
	}, nil
}

// Trace is the W3C trace context stored with an event.
type Trace struct {
	TraceParent, TraceState string
}

func placementHash(p canvas.Placement) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d,%d,%s", p.GX, p.GY, p.Color))
	return hex.EncodeToString(h[:8])
}

// Pixel is a painted pixel in a snapshot.
type Pixel struct {
	GX      int          `json:"gx"`
	GY      int          `json:"gy"`
	Color   canvas.Color `json:"-"`
	Version int64        `json:"version"`
}

// Snapshot returns the sequencer's published position, read first, then every
// painted pixel. Every event up to the position is reflected in the pixels;
// events after it may be too, which versions make harmless.
func (s *Store) Snapshot(ctx context.Context) (canvas.Position, []Pixel, error) {
	seq, err := s.sequencer(ctx)
	if err != nil {
		return canvas.Position{}, nil, err
	}
	cur, err := s.db.Collection(cPixels).Find(ctx, bson.M{"canvas": s.opts.Canvas})
	if err != nil {
		return canvas.Position{}, nil, unavailable("read pixels", err)
	}
	// Raw documents, read by hand: decoding a million pixels through the
	// reflection-driven codec took most of the snapshot's second.
	var tiles []bson.Raw
	if err := cur.All(ctx, &tiles); err != nil {
		return canvas.Position{}, nil, unavailable("read pixels", err)
	}
	var px []Pixel
	for _, t := range tiles {
		if px, err = appendTilePixels(px, t); err != nil {
			return canvas.Position{}, nil, err
		}
	}
	return canvas.Position{Epoch: seq.Epoch, Seq: seq.Seq}, px, nil
}

// appendTilePixels appends the painted pixels of one raw tile document.
func appendTilePixels(px []Pixel, t bson.Raw) ([]Pixel, error) {
	bad := func(what string) error { return fmt.Errorf("tile %s: %s", t.Lookup("_id"), what) }
	tx, ok1 := t.Lookup("tx").AsInt64OK()
	ty, ok2 := t.Lookup("ty").AsInt64OK()
	pd, ok3 := t.Lookup("p").DocumentOK()
	if !ok1 || !ok2 || !ok3 {
		return px, bad("malformed")
	}
	elems, err := pd.Elements()
	if err != nil {
		return px, bad(err.Error())
	}
	for _, e := range elems {
		key := e.Key()
		i, err := strconv.Atoi(key)
		d, ok := e.Value().DocumentOK()
		if err != nil || !ok || i < 0 || i >= tileSize*tileSize {
			return px, bad(fmt.Sprintf("bad pixel %q", key))
		}
		cs, ok1 := d.Lookup("c").StringValueOK()
		v, ok2 := d.Lookup("v").AsInt64OK()
		c, cerr := canvas.ParseColor(cs)
		if !ok1 || !ok2 || cerr != nil {
			return px, bad(fmt.Sprintf("bad pixel %q", key))
		}
		px = append(px, Pixel{GX: int(tx)*tileSize + i%tileSize, GY: int(ty)*tileSize + i/tileSize, Color: c, Version: v})
	}
	return px, nil
}

// inState selects this canvas's outbox events in state. Every outbox query
// is by canvas: several canvases may share one database, and each relay
// must publish, count and requeue only its own canvas's events.
func (s *Store) inState(state string) bson.D {
	return bson.D{{Key: "canvas", Value: s.opts.Canvas}, {Key: "state", Value: state}}
}

// Backlog reports the outbox's pending events and the oldest one's commit time
// (zero when none is pending).
func (s *Store) Backlog(ctx context.Context) (n int64, oldest time.Time, err error) {
	coll := s.db.Collection(cOutbox)
	n, err = coll.CountDocuments(ctx, s.inState(statePending))
	if err != nil {
		return 0, time.Time{}, unavailable("count outbox backlog", err)
	}
	if n == 0 {
		return 0, time.Time{}, nil
	}
	var d outboxDoc
	err = coll.FindOne(ctx, s.inState(statePending), options.FindOne().SetSort(bson.D{{Key: "committedAt", Value: 1}})).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return 0, time.Time{}, unavailable("read oldest pending event", err)
	}
	return n, d.CommittedAt, nil
}
