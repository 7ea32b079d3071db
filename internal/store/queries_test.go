package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
	"go.mongodb.org/mongo-driver/mongo/readconcern"
	"go.mongodb.org/mongo-driver/mongo/writeconcern"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// query is one filter (and sort) the store sent to a collection.
type query struct {
	coll, op     string
	filter, sort bson.D
}

func (q query) String() string {
	return fmt.Sprintf("%s.%s filter %v sort %v", q.coll, q.op, q.filter, q.sort)
}

// recorder wraps an embedded client and records the options the store
// opens its database and sessions with, and every query it runs.
type recorder struct {
	lungo.IClient
	mu       sync.Mutex
	dbOpts   []*options.DatabaseOptions
	sessOpts []*options.SessionOptions
	queries  []query
}

func (r *recorder) Database(name string, opts ...*options.DatabaseOptions) lungo.IDatabase {
	r.mu.Lock()
	r.dbOpts = append(r.dbOpts, options.MergeDatabaseOptions(opts...))
	r.mu.Unlock()
	return &recDB{IDatabase: r.IClient.Database(name, opts...), r: r}
}

func (r *recorder) StartSession(opts ...*options.SessionOptions) (lungo.ISession, error) {
	r.mu.Lock()
	r.sessOpts = append(r.sessOpts, options.MergeSessionOptions(opts...))
	r.mu.Unlock()
	return r.IClient.StartSession(opts...)
}

func (r *recorder) record(coll, op string, filter any, sort any) {
	q := query{coll: coll, op: op, filter: toD(filter), sort: toD(sort)}
	r.mu.Lock()
	r.queries = append(r.queries, q)
	r.mu.Unlock()
}

func toD(v any) bson.D {
	if v == nil {
		return nil
	}
	raw, err := bson.Marshal(v)
	if err != nil {
		panic(err)
	}
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		panic(err)
	}
	return d
}

type recDB struct {
	lungo.IDatabase
	r *recorder
}

func (d *recDB) Collection(name string, opts ...*options.CollectionOptions) lungo.ICollection {
	return &recColl{ICollection: d.IDatabase.Collection(name, opts...), r: d.r, name: name}
}

type recColl struct {
	lungo.ICollection
	r    *recorder
	name string
}

func (c *recColl) Find(ctx context.Context, f any, o ...*options.FindOptions) (lungo.ICursor, error) {
	c.r.record(c.name, "find", f, options.MergeFindOptions(o...).Sort)
	return c.ICollection.Find(ctx, f, o...)
}

func (c *recColl) FindOne(ctx context.Context, f any, o ...*options.FindOneOptions) lungo.ISingleResult {
	c.r.record(c.name, "findOne", f, options.MergeFindOneOptions(o...).Sort)
	return c.ICollection.FindOne(ctx, f, o...)
}

func (c *recColl) FindOneAndUpdate(ctx context.Context, f, u any, o ...*options.FindOneAndUpdateOptions) lungo.ISingleResult {
	c.r.record(c.name, "findOneAndUpdate", f, options.MergeFindOneAndUpdateOptions(o...).Sort)
	return c.ICollection.FindOneAndUpdate(ctx, f, u, o...)
}

func (c *recColl) CountDocuments(ctx context.Context, f any, o ...*options.CountOptions) (int64, error) {
	c.r.record(c.name, "count", f, nil)
	return c.ICollection.CountDocuments(ctx, f, o...)
}

func (c *recColl) UpdateOne(ctx context.Context, f, u any, o ...*options.UpdateOptions) (*mongo.UpdateResult, error) {
	c.r.record(c.name, "updateOne", f, nil)
	return c.ICollection.UpdateOne(ctx, f, u, o...)
}

func (c *recColl) UpdateMany(ctx context.Context, f, u any, o ...*options.UpdateOptions) (*mongo.UpdateResult, error) {
	c.r.record(c.name, "updateMany", f, nil)
	return c.ICollection.UpdateMany(ctx, f, u, o...)
}

func (c *recColl) ReplaceOne(ctx context.Context, f, u any, o ...*options.ReplaceOptions) (*mongo.UpdateResult, error) {
	c.r.record(c.name, "replaceOne", f, nil)
	return c.ICollection.ReplaceOne(ctx, f, u, o...)
}

func (c *recColl) DeleteMany(ctx context.Context, f any, o ...*options.DeleteOptions) (*mongo.DeleteResult, error) {
	c.r.record(c.name, "deleteMany", f, nil)
	return c.ICollection.DeleteMany(ctx, f, o...)
}

func (c *recColl) DeleteOne(ctx context.Context, f any, o ...*options.DeleteOptions) (*mongo.DeleteResult, error) {
	c.r.record(c.name, "deleteOne", f, nil)
	return c.ICollection.DeleteOne(ctx, f, o...)
}

// openRecorded opens a memory store behind a recorder.
func openRecorded(t *testing.T, opts Options) (*Store, *recorder) {
	t.Helper()
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, lungo.Options{Store: lungo.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{IClient: client}
	s, err := New(ctx, r, "pixelflow", func(context.Context) error { engine.Close(); return nil }, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(ctx) })
	return s, r
}

// exercise runs every store operation the API, the relay and /metrics use.
func exercise(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 6 {
		_, _, err := s.Place(ctx, canvas.Placement{GX: i % 3, GY: 1, Color: canvas.Color(i)}, "", Trace{})
		must(err)
	}
	_, _, err := s.Place(ctx, canvas.Placement{GX: 7, GY: 7, Color: 1}, "key", Trace{})
	must(err)
	_, _, err = s.Place(ctx, canvas.Placement{GX: 7, GY: 7, Color: 1}, "key", Trace{}) // replayed
	must(err)
	_, err = s.Canary(ctx, Trace{})
	must(err)
	_, _, err = s.Snapshot(ctx)
	must(err)
	_, _, err = s.Backlog(ctx)
	must(err)
	_, err = s.Sequencer(ctx)
	must(err)
	_, err = s.Pending(ctx, 3)
	must(err)
	lease, ok, err := s.AcquireLease(ctx, "r", time.Minute)
	must(err)
	if !ok {
		t.Fatal("lease not acquired")
	}
	// A new epoch, as the relay starts one: begin, requeue, commit.
	newEpoch := func(epoch string) canvas.Position {
		t.Helper()
		e, err := s.BeginEpoch(ctx, "r", lease.Term, epoch, time.Now().Add(-time.Hour))
		must(err)
		for more := true; more; {
			_, more, err = s.Requeue(ctx, "r", lease.Term, 2)
			must(err)
		}
		must(s.CommitEpoch(ctx, "r", lease.Term, e))
		return canvas.Position{Epoch: e}
	}
	pos := newEpoch("e1")
	for range 2 { // two claims, the second after another placement
		c, evs, err := s.Claim(ctx, "r", lease.Term, pos, 4)
		must(err)
		if len(evs) == 0 {
			t.Fatal("nothing claimed")
		}
		_, err = s.ClaimEvents(ctx, c)
		must(err)
		must(s.MarkPublished(ctx, "r", lease.Term, pos, c, time.Now()))
		pos.Seq = c.Last()
		_, _, err = s.Place(ctx, canvas.Placement{GX: 9, GY: 9, Color: 2}, "", Trace{})
		must(err)
	}
	// A claim large enough to tag its events (see tagAbove).
	for i := range tagAbove + 1 {
		_, _, err = s.Place(ctx, canvas.Placement{GX: i, GY: 12, Color: 3}, "", Trace{})
		must(err)
	}
	c, evs, err := s.Claim(ctx, "r", lease.Term, pos, 64)
	must(err)
	if !c.tagged() || len(evs) <= tagAbove {
		t.Fatalf("a claim of %d events, tagged=%v: want a tagged one", len(evs), c.tagged())
	}
	_, err = s.ClaimEvents(ctx, c)
	must(err)
	must(s.MarkPublished(ctx, "r", lease.Term, pos, c, time.Now()))
	pos.Seq = c.Last()
	_, err = s.Published(ctx, "e1", 1, pos.Seq)
	must(err)
	newEpoch("e2") // requeues what e1 published
	_, _, err = s.Backlog(ctx)
	must(err)
	must(s.ReleaseLease(ctx, "r"))
}

// TestReadAndWriteConcernsAreExplicit: the store opens its database with
// read and write concern majority and every session's transactions with
// read concern snapshot and write concern majority (the embedded engine
// ignores them; a real replica set would otherwise use the deployment's
// defaults, and a write rolled back after a failover could be read and
// published).
func TestReadAndWriteConcernsAreExplicit(t *testing.T) {
	s, r := openRecorded(t, Options{})
	exercise(t, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.dbOpts) != 1 {
		t.Fatalf("the store opened %d databases, want 1", len(r.dbOpts))
	}
	majority := writeconcern.Majority()
	if o := r.dbOpts[0]; o.ReadConcern == nil || o.ReadConcern.Level != readconcern.Majority().Level ||
		o.WriteConcern == nil || o.WriteConcern.W != majority.W {
		t.Errorf("database options %+v, want read and write concern majority", o)
	}
	if len(r.sessOpts) == 0 {
		t.Fatal("no session was started")
	}
	for i, o := range r.sessOpts {
		if o.DefaultReadConcern == nil || o.DefaultReadConcern.Level != readconcern.Snapshot().Level ||
			o.DefaultWriteConcern == nil || o.DefaultWriteConcern.W != majority.W {
			t.Errorf("session %d options %+v, want transactions with read concern snapshot and write concern majority", i, o)
		}
	}
	if o := txnOptions(); o.ReadConcern == nil || o.ReadConcern.Level != "snapshot" || o.WriteConcern == nil || o.WriteConcern.W != majority.W {
		t.Errorf("transaction options %+v", o)
	}
}

// TestEveryQueryIsIndexed runs every store operation the API, the relay and
// /metrics use, records each filter and sort, and checks that an index of
// the collection serves it: filters on _id use the _id index; otherwise an
// index must start with the filter's equality fields, continue with the
// sort's fields in order, and contain every range field (MongoDB's
// equality-sort-range rule), so no query scans a collection or sorts in
// memory. (The embedded engine's pruning deletes go around the driver API;
// on MongoDB they are the same claim/_id filters as the marking update.)
//
// The indexes checked are the ones MongoDB gets: the embedded engine, which
// scans for every query, has none (TestEmbeddedEngineKeepsNoQueryIndexes),
// so the store is told to index as on MongoDB first.
func TestEveryQueryIsIndexed(t *testing.T) {
	s, r := openRecorded(t, Options{})
	s.indexEmbedded = true
	if err := s.ensureIndexes(context.Background()); err != nil {
		t.Fatal(err)
	}
	exercise(t, s)
	r.mu.Lock()
	queries := slices.Clone(r.queries)
	r.mu.Unlock()
	indexes := map[string][][]string{}
	seen := map[string]bool{}
	for _, q := range queries {
		if seen[q.String()] {
			continue
		}
		seen[q.String()] = true
		if _, ok := indexes[q.coll]; !ok {
			specs, err := s.listIndexes(context.Background(), q.coll)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range specs {
				var keys []string
				for _, k := range sp.Key {
					keys = append(keys, k.Key)
				}
				indexes[q.coll] = append(indexes[q.coll], keys)
			}
		}
		if !covered(q, indexes[q.coll]) {
			t.Errorf("no index serves %s (indexes: %v)", q, indexes[q.coll])
		}
	}
	t.Logf("%d distinct queries checked", len(seen))
	for _, want := range []string{"outbox.findOne filter [{canvas main} {state pending}] sort [{committedAt 1}]"} {
		if !seen[want] {
			t.Errorf("the exercise did not run %q (Backlog's query): the list is stale", want)
		}
	}
}

// covered applies the equality-sort-range rule to q and an index's keys.
// An $or is covered when each of its branches, with the rest of the filter,
// is.
func covered(q query, indexes [][]string) bool {
	var rest bson.D
	for _, e := range q.filter {
		if e.Key == "$or" {
			for _, b := range e.Value.(bson.A) {
				branch := q
				branch.filter = append(slices.Clone(rest), b.(bson.D)...)
				for _, e2 := range q.filter {
					if e2.Key != "$or" && !slices.ContainsFunc(branch.filter, func(x bson.E) bool { return x.Key == e2.Key }) {
						branch.filter = append(branch.filter, e2)
					}
				}
				if !covered(branch, indexes) {
					return false
				}
			}
			return true
		}
		rest = append(rest, e)
	}
	var eq, rng []string
	for _, e := range q.filter {
		op := ""
		if d, ok := e.Value.(bson.D); ok && len(d) > 0 && strings.HasPrefix(d[0].Key, "$") {
			op = d[0].Key
		}
		switch op {
		case "", "$eq", "$in":
			if e.Key == "_id" {
				return true
			}
			eq = append(eq, e.Key)
		default:
			rng = append(rng, e.Key)
		}
	}
	if len(eq) == 0 && len(rng) == 0 {
		return false // a scan of the whole collection
	}
	var sortKeys []string
	for _, e := range q.sort {
		sortKeys = append(sortKeys, e.Key)
	}
	for _, keys := range indexes {
		// The index's leading fields are equality fields of the filter
		// (the others, if any, filter what it finds)...
		n := 0
		for n < len(keys) && slices.Contains(eq, keys[n]) {
			n++
		}
		if n == 0 && (len(eq) > 0 || keys[0] != rng[0]) {
			continue
		}
		// ...then come the sort's fields in order (no sort in memory)...
		if n+len(sortKeys) > len(keys) || !slices.Equal(keys[n:n+len(sortKeys)], sortKeys) {
			continue
		}
		// ...and every range field is in the index (bounds, not a scan).
		ok := true
		for _, r := range rng {
			ok = ok && slices.Contains(keys[n:], r)
		}
		if ok {
			return true
		}
	}
	return false
}

// TestSmallClaimWritesOnlyTheSequencer: a claim of a few events finds them
// later by the ids the sequencer records, so it writes nothing to the
// outbox (the relay's claim at a few events a batch costs one write fewer);
// a large one tags its events. Both are found again by ClaimEvents and
// marked.
func TestSmallClaimWritesOnlyTheSequencer(t *testing.T) {
	s, r := openRecorded(t, Options{PruneOnPublish: true})
	ctx := context.Background()
	lease, pos := leadEpoch(t, s, "r", "e1")
	for _, n := range []int{1, tagAbove, tagAbove + 1} {
		for i := range n {
			if _, _, err := s.Place(ctx, canvas.Placement{GX: i, GY: n % 64, Color: 5}, "", Trace{}); err != nil {
				t.Fatal(err)
			}
		}
		r.mu.Lock()
		r.queries = nil
		r.mu.Unlock()
		c, evs, err := s.Claim(ctx, "r", lease.Term, pos, 64)
		if err != nil || len(evs) != n {
			t.Fatalf("claim of %d: %d events, %v", n, len(evs), err)
		}
		r.mu.Lock()
		var outboxWrites []string
		for _, q := range r.queries {
			if q.coll == cOutbox && q.op != "find" {
				outboxWrites = append(outboxWrites, q.String())
			}
		}
		r.mu.Unlock()
		if wantTag := n > tagAbove; (len(outboxWrites) > 0) != wantTag {
			t.Errorf("claim of %d events wrote to the outbox: %q; want a write only to tag more than %d", n, outboxWrites, tagAbove)
		}
		got, err := s.ClaimEvents(ctx, c)
		if err != nil || len(got) != n {
			t.Fatalf("claim of %d: ClaimEvents found %d, %v", n, len(got), err)
		}
		if err := s.MarkPublished(ctx, "r", lease.Term, pos, c, time.Now()); err != nil {
			t.Fatal(err)
		}
		pos.Seq = c.Last()
		if left, err := s.Pending(ctx, 100); err != nil || len(left) != 0 {
			t.Fatalf("after marking a claim of %d: %d pending, %v", n, len(left), err)
		}
	}
}

// leadEpoch takes the sequencer lease for holder and moves the sequencer
// to a new epoch, as a relay does when it starts; it returns the lease
// and the epoch's start.
func leadEpoch(t *testing.T, s *Store, holder, epoch string) (Lease, canvas.Position) {
	t.Helper()
	ctx := context.Background()
	lease, ok, err := s.AcquireLease(ctx, holder, time.Minute)
	if err != nil || !ok {
		t.Fatalf("acquire lease: ok=%v %v", ok, err)
	}
	e, err := s.BeginEpoch(ctx, holder, lease.Term, epoch, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitEpoch(ctx, holder, lease.Term, e); err != nil {
		t.Fatal(err)
	}
	return lease, canvas.Position{Epoch: e}
}

// TestSequencerOfANewerFormatIsRefused: a leader records SequencerFormat;
// state without a format (older releases) is taken over and recorded
// anew; state of a higher format (a newer release) is refused by every
// AcquireLease, the holder's renewal and a standby's alike, with a message
// that names both formats, and is left as it was.
func TestSequencerOfANewerFormatIsRefused(t *testing.T) {
	s, _ := openRecorded(t, Options{})
	ctx := context.Background()
	coll := s.db.Collection(cSequencers)
	format := func() int {
		t.Helper()
		var d seqDoc
		if err := coll.FindOne(ctx, bson.M{"_id": s.opts.Canvas}).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d.Format
	}
	setFormat := func(u bson.M) {
		t.Helper()
		if _, err := coll.UpdateOne(ctx, bson.M{"_id": s.opts.Canvas}, u); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := s.AcquireLease(ctx, "r", time.Minute); err != nil || !ok {
		t.Fatalf("first lease: %v %v", ok, err)
	}
	if f := format(); f != SequencerFormat {
		t.Fatalf("format %d recorded, want %d", f, SequencerFormat)
	}
	setFormat(bson.M{"$unset": bson.M{"format": ""}}) // as an older release leaves it
	if _, ok, err := s.AcquireLease(ctx, "r", time.Minute); err != nil || !ok {
		t.Fatalf("renewal over a format-1 sequencer: %v %v", ok, err)
	}
	if f := format(); f != SequencerFormat {
		t.Fatalf("format %d after a renewal, want %d", f, SequencerFormat)
	}
	setFormat(bson.M{"$set": bson.M{"format": SequencerFormat + 1}})
	for _, holder := range []string{"r", "standby"} {
		_, ok, err := s.AcquireLease(ctx, holder, time.Minute)
		if !errors.Is(err, ErrNewerFormat) || ok {
			t.Fatalf("%s: AcquireLease over format %d: ok %v, err %v; want ErrNewerFormat", holder, SequencerFormat+1, ok, err)
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("format %d, this release reads up to %d", SequencerFormat+1, SequencerFormat)) {
			t.Errorf("message does not name the formats: %s", msg)
		}
	}
	if f := format(); f != SequencerFormat+1 {
		t.Errorf("a refused AcquireLease changed the format to %d", f)
	}
}
