// Package storetest is the store's contract: one behaviour suite that every
// engine the store runs on must pass, the way Watermill's pubsub/tests
// holds every backend to the same assertions. make test runs it on the
// embedded engine; make test-mongo runs it on a real replica set
// (MONGO_URI), so a deployment can prove the same invariants with one
// command.
//
// Every test gets a database of its own (a fresh name each run, dropped
// afterwards), so the suite runs its tests in parallel, and again and
// again, on one replica set.
package storetest

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// Connect gives one test a connected client of the engine under test. It
// registers the client's disconnection (or the engine's closing) with
// t.Cleanup; the suite drops the databases it made before that.
type Connect func(t testing.TB) lungo.IClient

// Env is one contract test's engine and database.
type Env struct {
	t      *testing.T
	Client lungo.IClient
	// DB is this test's own database.
	DB string
}

// Open opens a store on the test's database; it is closed (not the
// client) when the test ends. Every store a test opens shares the one
// database, as processes of one deployment do.
func (e *Env) Open(opts store.Options) *store.Store {
	e.t.Helper()
	s, err := store.New(context.Background(), e.Client, e.DB, func(context.Context) error { return nil }, opts)
	if err != nil {
		e.t.Fatalf("open store on %s: %v", e.DB, err)
	}
	return s
}

// test is one contract test.
type test struct {
	name string
	fn   func(t *testing.T, e *Env)
}

// tests is the contract, in the order it is reported.
var tests = []test{
	{"PlaceWritesPixelAndOutboxTogether", testPlaceWritesPixelAndOutboxTogether},
	{"PlaceFailureBetweenWritesLeavesNeither", testPlaceFailureBetweenWritesLeavesNeither},
	{"PlaceRetriesTransientErrors", testPlaceRetriesTransientErrors},
	{"PlaceGivesUpAfterRetryBudget", testPlaceGivesUpAfterRetryBudget},
	{"CommitRetriedOnUnknownResult", testCommitRetriedOnUnknownResult},
	{"IdempotencyKey", testIdempotencyKey},
	{"IdempotencyKeyConcurrent", testIdempotencyKeyConcurrent},
	{"LeaseExclusive", testLeaseExclusive},
	{"MarkPublishedIsFencedBySequence", testMarkPublishedIsFencedBySequence},
	{"EpochChangeIsResumable", testEpochChangeIsResumable},
	{"ClaimIsBoundedAndRecorded", testClaimIsBoundedAndRecorded},
	{"PendingOrdersVersionsPerPixel", testPendingOrdersVersionsPerPixel},
	{"ClaimAndMark", testClaimAndMark},
	{"MarkAndClaim", testMarkAndClaim},
	{"MarkAndClaimIsFenced", testMarkAndClaimIsFenced},
	{"WatchOutboxWakesOnInserts", testWatchOutboxWakesOnInserts},
	{"SnapshotAcrossTiles", testSnapshotAcrossTiles},
	{"GroupCommitConcurrentPlacements", testGroupCommitConcurrentPlacements},
	{"NoIndexesLeavesTheOwnersIndexes", testNoIndexesLeavesTheOwnersIndexes},
	{"CanvasesShareADatabaseApart", testCanvasesShareADatabaseApart},
	{"ChangedTTLAppliesAtNextOpen", testChangedTTLAppliesAtNextOpen},
	{"IdempotencyKeysAreScopedPerClient", testIdempotencyKeysAreScopedPerClient},
	{"IdempotencyKeysExpire", testIdempotencyKeysExpire},
}

// Run runs the contract on the engine connect reaches, each test in
// parallel with the others on a database of its own.
func Run(t *testing.T, connect Connect) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, connect))
		})
	}
}

func newEnv(t *testing.T, connect Connect) *Env {
	t.Helper()
	return onClient(t, connect(t))
}

// Sub is a database of its own for subtest t, on the same engine.
func (e *Env) Sub(t *testing.T) *Env {
	t.Helper()
	return onClient(t, e.Client)
}

func onClient(t *testing.T, client lungo.IClient) *Env {
	t.Helper()
	e := &Env{t: t, Client: client, DB: dbName(t.Name())}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := client.Database(e.DB).Drop(ctx); err != nil {
			t.Errorf("drop test database %s: %v", e.DB, err)
		}
	})
	return e
}

// dbName is a database name of its own for test name, fresh on every run:
// "pft_" + a random part + what fits of the test's name (MongoDB allows 63
// bytes and no '/', '.', '$', space or quote).
func dbName(test string) string {
	var b [4]byte
	_, _ = crand.Read(b[:])
	var name strings.Builder
	for _, r := range test {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			name.WriteRune(r)
		} else {
			name.WriteByte('_')
		}
	}
	n := name.String()
	if i := strings.IndexByte(n, '_'); i >= 0 { // drop the suite's own test name
		n = n[i+1:]
	}
	n = "pft_" + hex.EncodeToString(b[:]) + "_" + n
	return n[:min(len(n), 63)]
}

func place(gx, gy int, color canvas.Color) canvas.Placement {
	return canvas.Placement{GX: gx, GY: gy, Color: color}
}

// counts returns (painted pixels, outbox backlog).
func counts(t *testing.T, s *store.Store) (int, int64) {
	t.Helper()
	_, px, err := s.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := s.Backlog(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(px), n
}

func testPlaceWritesPixelAndOutboxTogether(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	ev1, _, err := s.Place(ctx, place(3, 4, 0xFF0000), "", store.Trace{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	if err != nil {
		t.Fatal(err)
	}
	ev2, _, err := s.Place(ctx, place(3, 4, 0x00FF00), "", store.Trace{})
	if err != nil {
		t.Fatal(err)
	}
	if ev1.Version != 1 || ev2.Version != 2 {
		t.Fatalf("versions %d, %d; want 1, 2", ev1.Version, ev2.Version)
	}
	_, px, _ := s.Snapshot(ctx)
	if len(px) != 1 || px[0].Color != 0x00FF00 || px[0].Version != 2 {
		t.Fatalf("snapshot %+v, want one pixel #00FF00 v2", px)
	}
	pending, err := s.Pending(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 2 || pending[0].ID != ev1.ID || pending[1].Version != 2 {
		t.Fatalf("pending %+v", pending)
	}
	if pending[0].TraceParent == "" {
		t.Fatal("trace context was not stored with the event")
	}
}

func testPlaceFailureBetweenWritesLeavesNeither(t *testing.T, e *Env) {
	boom := errors.New("injected failure")
	s := e.Open(store.Options{Failpoint: func(name string) error {
		if name == "place:after-pixel" {
			return boom
		}
		return nil
	}})
	_, _, err := s.Place(context.Background(), place(1, 1, 0x123456), "", store.Trace{})
	if err == nil {
		t.Fatal("Place succeeded despite the injected failure")
	}
	if px, backlog := counts(t, s); px != 0 || backlog != 0 {
		t.Fatalf("after a failed transaction: %d pixels, %d outbox events; want 0, 0", px, backlog)
	}
	if code := canvas.ErrorCode(err); code != canvas.EUnavailable {
		t.Fatalf("error code %q, want %q", code, canvas.EUnavailable)
	}
}

func testPlaceRetriesTransientErrors(t *testing.T, e *Env) {
	var fails atomic.Int32
	fails.Store(2)
	s := e.Open(store.Options{Failpoint: func(name string) error {
		if name == "place:after-pixel" && fails.Add(-1) >= 0 {
			return mongo.CommandError{Code: 112, Name: "WriteConflict", Labels: []string{"TransientTransactionError"}}
		}
		return nil
	}})
	ev, _, err := s.Place(context.Background(), place(2, 2, 0xABCDEF), "", store.Trace{})
	if err != nil {
		t.Fatalf("Place after 2 transient errors: %v", err)
	}
	if ev.Version != 1 {
		t.Fatalf("version %d, want 1 (aborted attempts must not count)", ev.Version)
	}
	if px, backlog := counts(t, s); px != 1 || backlog != 1 {
		t.Fatalf("%d pixels, %d events; want 1, 1", px, backlog)
	}
	if s.Retries() != 2 {
		t.Fatalf("retries %d, want 2", s.Retries())
	}
}

func testPlaceGivesUpAfterRetryBudget(t *testing.T, e *Env) {
	s := e.Open(store.Options{TxnAttempts: 3, Failpoint: func(name string) error {
		if name == "place:after-pixel" {
			return mongo.CommandError{Code: 112, Labels: []string{"TransientTransactionError"}}
		}
		return nil
	}})
	_, _, err := s.Place(context.Background(), place(2, 2, 0xABCDEF), "", store.Trace{})
	if canvas.ErrorCode(err) != canvas.EUnavailable {
		t.Fatalf("err %v, want unavailable after the budget", err)
	}
	if px, backlog := counts(t, s); px != 0 || backlog != 0 {
		t.Fatalf("%d pixels, %d events; want nothing written", px, backlog)
	}
	if s.Retries() != 2 {
		t.Fatalf("retries %d, want 2 (3 attempts)", s.Retries())
	}
}

func testCommitRetriedOnUnknownResult(t *testing.T, e *Env) {
	var fails atomic.Int32
	fails.Store(1)
	s := e.Open(store.Options{Failpoint: func(name string) error {
		if name == "txn:commit" && fails.Add(-1) >= 0 {
			return mongo.CommandError{Code: 50, Labels: []string{"UnknownTransactionCommitResult"}}
		}
		return nil
	}})
	if _, _, err := s.Place(context.Background(), place(0, 0, 0x111111), "", store.Trace{}); err != nil {
		t.Fatal(err)
	}
	if px, backlog := counts(t, s); px != 1 || backlog != 1 {
		t.Fatalf("%d pixels, %d events; want exactly one of each", px, backlog)
	}
}

func testIdempotencyKey(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	first, replayed, err := s.Place(ctx, place(5, 5, 0xFF00FF), "key-1", store.Trace{})
	if err != nil || replayed {
		t.Fatalf("first: %v replayed=%v", err, replayed)
	}
	again, replayed, err := s.Place(ctx, place(5, 5, 0xFF00FF), "key-1", store.Trace{})
	if err != nil || !replayed {
		t.Fatalf("retry: %v replayed=%v", err, replayed)
	}
	if again.ID != first.ID || again.Version != first.Version || !again.CommittedAt.Equal(first.CommittedAt) {
		t.Fatalf("retry answered %+v, first was %+v", again, first)
	}
	if px, backlog := counts(t, s); px != 1 || backlog != 1 {
		t.Fatalf("%d pixels, %d events; the retry must write nothing", px, backlog)
	}
	_, _, err = s.Place(ctx, place(6, 5, 0xFF00FF), "key-1", store.Trace{})
	if canvas.ErrorCode(err) != canvas.EConflict {
		t.Fatalf("same key, other pixel: %v, want conflict", err)
	}
}

// testIdempotencyKeyConcurrent: concurrent requests with one key write one
// event, each in its own transaction and sharing transactions.
func testIdempotencyKeyConcurrent(t *testing.T, e *Env) {
	for _, group := range []int{-1, 16} { // -1: each in its own transaction
		t.Run(fmt.Sprintf("group=%d", group), func(t *testing.T) {
			s := e.Sub(t).Open(store.Options{GroupCommit: group})
			var wg sync.WaitGroup
			ids := make([]string, 8)
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ev, _, err := s.Place(context.Background(), place(7, 7, 0x0000FF), "same", store.Trace{})
					if err != nil {
						t.Error(err)
					}
					ids[i] = ev.ID
				}()
			}
			wg.Wait()
			for _, id := range ids {
				if id != ids[0] {
					t.Fatalf("concurrent retries answered different events: %v", ids)
				}
			}
			if _, backlog := counts(t, s); backlog != 1 {
				t.Fatalf("%d events, want 1", backlog)
			}
		})
	}
}

func testLeaseExclusive(t *testing.T, e *Env) {
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := e.Open(store.Options{Now: clock})
	ctx := context.Background()
	if _, ok, err := s.AcquireLease(ctx, "a", 5*time.Second); err != nil || !ok {
		t.Fatalf("a: ok=%v err=%v", ok, err)
	}
	l, ok, err := s.AcquireLease(ctx, "b", 5*time.Second)
	if err != nil || ok || l.Holder != "a" {
		t.Fatalf("b while a holds: ok=%v holder=%q err=%v", ok, l.Holder, err)
	}
	mu.Lock()
	now = now.Add(6 * time.Second)
	mu.Unlock()
	if _, ok, err := s.AcquireLease(ctx, "b", 5*time.Second); err != nil || !ok {
		t.Fatalf("b after expiry: ok=%v err=%v", ok, err)
	}
	// a's late mark is fenced off.
	err = s.MarkPublished(ctx, "a", 1, canvas.Position{}, store.Claim{First: 1, IDs: []string{"65a000000000000000000000"}}, now)
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("mark by the old holder: %v, want ErrLeaseLost", err)
	}
	// Taking over starts a new term; a renewal keeps it; a lapsed lease
	// taken again, even by its last holder, starts another.
	l, _, _ = s.AcquireLease(ctx, "b", 5*time.Second)
	if l.Term != 2 {
		t.Fatalf("b's renewal: term %d, want 2 (a had 1)", l.Term)
	}
	mu.Lock()
	now = now.Add(6 * time.Second)
	mu.Unlock()
	if l, _, _ = s.AcquireLease(ctx, "b", 5*time.Second); l.Term != 3 {
		t.Fatalf("b after its own lease lapsed: term %d, want 3", l.Term)
	}
}

func testMarkPublishedIsFencedBySequence(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	ev, _, _ := s.Place(ctx, place(1, 2, 0x010203), "", store.Trace{})
	lease, ok, err := s.AcquireLease(ctx, "r", time.Minute)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	startEpoch(t, s, lease, "e1")
	at := canvas.Position{Epoch: "e1"}
	c, evs, err := s.Claim(ctx, "r", lease.Term, at, 10)
	if err != nil || len(evs) != 1 || c.First != 1 || c.IDs[0] != ev.ID {
		t.Fatalf("claim %+v %d %v", c, len(evs), err)
	}
	if err := s.MarkPublished(ctx, "r", lease.Term, at, c, time.Now()); err != nil {
		t.Fatal(err)
	}
	// Marking again from the stale position must fail and change nothing.
	if err := s.MarkPublished(ctx, "r", lease.Term, at, c, time.Now()); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("stale mark: %v", err)
	}
	seq, _ := s.Sequencer(ctx)
	if seq.Epoch != "e1" || seq.Seq != 1 {
		t.Fatalf("sequencer %+v", seq)
	}
	pub, err := s.Published(ctx, "e1", 1, 1)
	if err != nil || len(pub) != 1 || pub[0].ID != ev.ID {
		t.Fatalf("published %+v %v", pub, err)
	}
	if n, _, _ := s.Backlog(ctx); n != 0 {
		t.Fatalf("backlog %d after marking", n)
	}
	// A new epoch requeues what was published inside the window, before it
	// commits, in bounded steps.
	if got, err := s.BeginEpoch(ctx, "r", lease.Term, "e2", time.Now().Add(-time.Minute)); err != nil || got != "e2" {
		t.Fatalf("begin e2: %q %v", got, err)
	}
	if _, _, err := s.Claim(ctx, "r", lease.Term, canvas.Position{Epoch: "e1", Seq: 1}, 10); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("claim during an epoch change: %v, want ErrLeaseLost", err)
	}
	n, more, err := s.Requeue(ctx, "r", lease.Term, 10)
	if err != nil || n != 1 || more {
		t.Fatalf("requeued %d more=%v %v", n, more, err)
	}
	if n, _, _ := s.Backlog(ctx); n != 1 {
		t.Fatalf("backlog %d after requeue, want 1", n)
	}
	if err := s.CommitEpoch(ctx, "r", lease.Term, "e2"); err != nil {
		t.Fatal(err)
	}
	if seq, _ := s.Sequencer(ctx); seq.Position != (canvas.Position{Epoch: "e2"}) {
		t.Fatalf("sequencer %s after the epoch change, want e2:0", seq.Position)
	}
}

// testEpochChangeIsResumable: a failed or interrupted epoch change keeps
// its one epoch; a retry (or a successor) finishes it instead of starting
// another.
func testEpochChangeIsResumable(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	l, _, _ := s.AcquireLease(ctx, "a", time.Minute)
	if got, _ := s.BeginEpoch(ctx, "a", l.Term, "e1", time.Now()); got != "e1" {
		t.Fatalf("begin: %q", got)
	}
	if got, _ := s.BeginEpoch(ctx, "a", l.Term, "other", time.Now()); got != "e1" {
		t.Fatalf("second begin: %q, want the change in progress e1", got)
	}
	if err := s.ReleaseLease(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	lb, ok, _ := s.AcquireLease(ctx, "b", time.Minute)
	if !ok || lb.NextEpoch != "e1" {
		t.Fatalf("successor sees %+v, want the change to e1 in progress", lb)
	}
	if err := s.CommitEpoch(ctx, "a", l.Term, "e1"); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("commit by the deposed holder: %v", err)
	}
	if err := s.CommitEpoch(ctx, "b", lb.Term, "e1"); err != nil {
		t.Fatal(err)
	}
}

// testClaimIsBoundedAndRecorded: a claim takes at most its limit, records
// its numbers before anything is published, and a successor reads the same
// numbers back.
func testClaimIsBoundedAndRecorded(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	for i := range 25 {
		if _, _, err := s.Place(ctx, place(i, 0, canvas.Color(i)), "", store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	l, _, _ := s.AcquireLease(ctx, "a", time.Minute)
	startEpoch(t, s, l, "e1")
	c, evs, err := s.Claim(ctx, "a", l.Term, canvas.Position{Epoch: "e1"}, 10)
	if err != nil || len(evs) != 10 || c.First != 1 || c.Last() != 10 {
		t.Fatalf("claim: first %d last %d, %d events, %v", c.First, c.Last(), len(evs), err)
	}
	_ = s.ReleaseLease(ctx, "a")
	lb, _, _ := s.AcquireLease(ctx, "b", time.Minute)
	if lb.Claim == nil || lb.Claim.ID != c.ID || lb.Claim.First != 1 || len(lb.Claim.IDs) != 10 {
		t.Fatalf("successor sees claim %+v, want %+v", lb.Claim, c)
	}
	again, err := s.ClaimEvents(ctx, *lb.Claim)
	if err != nil {
		t.Fatal(err)
	}
	for i := range again {
		if again[i].ID != evs[i].ID {
			t.Fatalf("claimed event %d: %s, recorded %s", i, again[i].ID, evs[i].ID)
		}
	}
	if err := s.MarkPublished(ctx, "a", l.Term, canvas.Position{Epoch: "e1"}, c, time.Now()); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("mark by the deposed holder: %v", err)
	}
	if err := s.MarkPublished(ctx, "b", lb.Term, canvas.Position{Epoch: "e1"}, *lb.Claim, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := s.Backlog(ctx); n != 15 {
		t.Fatalf("backlog %d, want 15", n)
	}
}

func testPendingOrdersVersionsPerPixel(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, _, err := s.Place(ctx, place(i%3, 0, canvas.Color(i)), "", store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := s.Pending(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	last := map[int]int64{}
	for _, e := range evs {
		if e.Version <= last[e.GX] {
			t.Fatalf("pixel %d: version %d after %d", e.GX, e.Version, last[e.GX])
		}
		last[e.GX] = e.Version
	}
	// With a limit, no pixel's later version is taken without its earlier one.
	for gx, v := range last {
		for want := int64(1); want <= v; want++ {
			found := false
			for _, e := range evs {
				found = found || (e.GX == gx && e.Version == want)
			}
			if !found {
				t.Fatalf("pixel %d: batch has version %d but not %d", gx, v, want)
			}
		}
	}
}

func testClaimAndMark(t *testing.T, e *Env) {
	for _, prune := range []bool{false, true} {
		t.Run(fmt.Sprint("prune=", prune), func(t *testing.T) {
			s := e.Sub(t).Open(store.Options{PruneOnPublish: prune})
			ctx := context.Background()
			for i := 0; i < 10; i++ {
				if _, _, err := s.Place(ctx, place(i%2, 0, canvas.Color(i)), "", store.Trace{}); err != nil {
					t.Fatal(err)
				}
			}
			lease, _, err := s.AcquireLease(ctx, "r", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := s.Claim(ctx, "other", lease.Term, lease.Position, 100); !errors.Is(err, store.ErrLeaseLost) {
				t.Fatalf("claim without the lease: %v", err)
			}
			claim, evs, err := s.Claim(ctx, "r", lease.Term, lease.Position, 100)
			if err != nil || len(evs) != 10 {
				t.Fatalf("claimed %d, %v", len(evs), err)
			}
			late, _, _ := s.Place(ctx, place(5, 5, 1), "", store.Trace{}) // not in the claim
			if err := s.MarkPublished(ctx, "r", lease.Term, lease.Position, claim, time.Now()); err != nil {
				t.Fatal(err)
			}
			pending, _ := s.Pending(ctx, 100)
			if len(pending) != 1 || pending[0].ID != late.ID {
				t.Fatalf("pending after mark: %+v, want only the late event", pending)
			}
			pub, err := s.Published(ctx, "", 1, 10)
			if err != nil {
				t.Fatal(err)
			}
			want := 10
			if prune {
				want = 0
			}
			if len(pub) != want {
				t.Fatalf("published events kept: %d, want %d", len(pub), want)
			}
			for i, e := range pub {
				if e.Seq != uint64(i)+1 || e.ID != claim.IDs[i] {
					t.Fatalf("published[%d] = %s seq %d, want %s seq %d", i, e.ID, e.Seq, claim.IDs[i], i+1)
				}
			}
		})
	}
}

// testMarkAndClaim: one transaction marks the open claim exactly as
// MarkPublished does and claims the next pending events from its last
// number exactly as Claim does (bounded, recorded for a successor); with
// nothing pending it marks and leaves no claim open.
func testMarkAndClaim(t *testing.T, e *Env) {
	for _, prune := range []bool{false, true} {
		t.Run(fmt.Sprint("prune=", prune), func(t *testing.T) {
			s := e.Sub(t).Open(store.Options{PruneOnPublish: prune})
			ctx := context.Background()
			var ids []string
			for i := range 4 {
				ev, _, err := s.Place(ctx, place(i, 0, canvas.Color(i)), "", store.Trace{})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, ev.ID)
			}
			l, _, _ := s.AcquireLease(ctx, "r", time.Minute)
			startEpoch(t, s, l, "e1")
			at := canvas.Position{Epoch: "e1"}
			c1, evs, err := s.Claim(ctx, "r", l.Term, at, 10)
			if err != nil || len(evs) != 4 {
				t.Fatalf("claim: %d events, %v", len(evs), err)
			}
			// Written after the first claim: the next claim takes 3 of 5.
			for i := range 5 {
				ev, _, err := s.Place(ctx, place(i, 1, canvas.Color(i)), "", store.Trace{})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, ev.ID)
			}
			if _, _, err := s.MarkAndClaim(ctx, "r", l.Term, at, c1, time.Now(), 0); err == nil {
				t.Fatal("mark and claim with limit 0: no error")
			}
			c2, evs, err := s.MarkAndClaim(ctx, "r", l.Term, at, c1, time.Now(), 3)
			if err != nil || len(evs) != 3 || c2.First != 5 || c2.Last() != 7 || c2.ID == c1.ID {
				t.Fatalf("mark and claim: %+v, %d events, %v; want a new claim of 5..7", c2, len(evs), err)
			}
			for i, ev := range evs {
				if ev.ID != ids[4+i] || c2.IDs[i] != ev.ID {
					t.Fatalf("claimed[%d] = %s (claim %s), want %s", i, ev.ID, c2.IDs[i], ids[4+i])
				}
			}
			if seq, _ := s.Sequencer(ctx); seq.Position != (canvas.Position{Epoch: "e1", Seq: 4}) {
				t.Fatalf("sequencer at %s after marking 1..4, want e1:4", seq.Position)
			}
			pub, err := s.Published(ctx, "e1", 1, 4)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{false: 4, true: 0}[prune]; len(pub) != want {
				t.Fatalf("published events kept: %d, want %d", len(pub), want)
			}
			for i, ev := range pub {
				if ev.Seq != uint64(i)+1 || ev.ID != ids[i] {
					t.Fatalf("published[%d] = %s seq %d, want %s seq %d", i, ev.ID, ev.Seq, ids[i], i+1)
				}
			}
			if n, _, _ := s.Backlog(ctx); n != 5 {
				t.Fatalf("backlog %d, want 5 (3 claimed, 2 not)", n)
			}
			// A successor sees the new claim with its numbers.
			_ = s.ReleaseLease(ctx, "r")
			lb, _, _ := s.AcquireLease(ctx, "b", time.Minute)
			if lb.Claim == nil || lb.Claim.ID != c2.ID || lb.Claim.First != 5 || len(lb.Claim.IDs) != 3 {
				t.Fatalf("successor sees claim %+v, want %+v", lb.Claim, c2)
			}
			again, err := s.ClaimEvents(ctx, *lb.Claim)
			if err != nil || len(again) != 3 || again[0].ID != ids[4] {
				t.Fatalf("claim events: %d, %v", len(again), err)
			}
			at = canvas.Position{Epoch: "e1", Seq: 4}
			c3, evs, err := s.MarkAndClaim(ctx, "b", lb.Term, at, *lb.Claim, time.Now(), 10)
			if err != nil || len(evs) != 2 || c3.First != 8 {
				t.Fatalf("successor's mark and claim: %+v, %d events, %v", c3, len(evs), err)
			}
			at = canvas.Position{Epoch: "e1", Seq: 7}
			c4, evs, err := s.MarkAndClaim(ctx, "b", lb.Term, at, c3, time.Now(), 10)
			if err != nil || len(evs) != 0 || len(c4.IDs) != 0 {
				t.Fatalf("mark and claim with nothing pending: %+v, %d events, %v", c4, len(evs), err)
			}
			l, ok, _ := s.AcquireLease(ctx, "b", time.Minute)
			if !ok || l.Claim != nil || l.Position != (canvas.Position{Epoch: "e1", Seq: 9}) {
				t.Fatalf("after the last mark: %s, claim %+v; want e1:9 and no open claim", l.Position, l.Claim)
			}
			if n, _, _ := s.Backlog(ctx); n != 0 {
				t.Fatalf("backlog %d, want 0", n)
			}
			if !prune {
				pub, err := s.Published(ctx, "e1", 1, 9)
				if err != nil || len(pub) != 9 {
					t.Fatalf("published %d of 9, %v", len(pub), err)
				}
				for i, ev := range pub {
					if ev.Seq != uint64(i)+1 || ev.ID != ids[i] {
						t.Fatalf("published[%d] = %s seq %d, want %s seq %d", i, ev.ID, ev.Seq, ids[i], i+1)
					}
				}
			}
		})
	}
}

// testMarkAndClaimIsFenced: MarkAndClaim is fenced like its two halves —
// the lease (holder, term, expiry), the position, the open claim, no epoch
// change in progress — and a refusal writes nothing, neither the mark nor
// the claim.
func testMarkAndClaimIsFenced(t *testing.T, e *Env) {
	var mu sync.Mutex
	now := time.Now()
	s := e.Open(store.Options{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }})
	ctx := context.Background()
	for i := range 3 {
		if _, _, err := s.Place(ctx, place(i, 0, canvas.Color(i)), "", store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	l, _, _ := s.AcquireLease(ctx, "r", 5*time.Second)
	startEpoch(t, s, l, "e1")
	at := canvas.Position{Epoch: "e1"}
	c, _, err := s.Claim(ctx, "r", l.Term, at, 2)
	if err != nil || len(c.IDs) != 2 {
		t.Fatalf("claim %+v %v", c, err)
	}
	// unchanged checks that a refused call wrote nothing.
	unchanged := func(what string) {
		t.Helper()
		l, _, err := s.AcquireLease(ctx, "probe-"+what, 0) // reads; the lease stays r's while valid
		if err != nil {
			t.Fatal(err)
		}
		if l.Position != at || l.Claim == nil || l.Claim.ID != c.ID {
			t.Fatalf("%s: sequencer %s claim %+v, want %s with claim %s open", what, l.Position, l.Claim, at, c.ID)
		}
		if n, _, _ := s.Backlog(ctx); n != 3 {
			t.Fatalf("%s: backlog %d, want 3", what, n)
		}
		if pub, _ := s.Published(ctx, "e1", 1, 3); len(pub) != 0 {
			t.Fatalf("%s: %d events marked", what, len(pub))
		}
		if again, err := s.ClaimEvents(ctx, c); err != nil || len(again) != 2 {
			t.Fatalf("%s: the open claim's events: %d, %v", what, len(again), err)
		}
	}
	refused := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrLeaseLost) {
			t.Fatalf("%s: %v, want ErrLeaseLost", what, err)
		}
		unchanged(what)
	}
	_, _, err = s.MarkAndClaim(ctx, "other", l.Term, at, c, time.Now(), 10)
	refused("another holder", err)
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term-1, at, c, time.Now(), 10)
	refused("an older term", err)
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term, canvas.Position{Epoch: "e0"}, c, time.Now(), 10)
	refused("another epoch", err)
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term, at, store.Claim{ID: "not-open", First: 1, IDs: c.IDs}, time.Now(), 10)
	refused("a claim that is not the open one", err)
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term, canvas.Position{Epoch: "e1", Seq: 1}, store.Claim{ID: c.ID, First: 2, IDs: c.IDs}, time.Now(), 10)
	refused("another position in the same epoch", err)
	if _, _, err = s.MarkAndClaim(ctx, "r", l.Term, canvas.Position{Epoch: "e1", Seq: 1}, c, time.Now(), 10); err == nil {
		t.Fatal("a position the claim does not start after: no error")
	}
	unchanged("a position the claim does not start after")
	mu.Lock()
	now = now.Add(6 * time.Second) // r's lease lapses
	mu.Unlock()
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term, at, c, time.Now(), 10)
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("an expired lease: %v, want ErrLeaseLost", err)
	}
	// A successor takes over (a new term) and begins an epoch change: the
	// deposed holder is refused, and so is the successor during the change.
	lb, ok, _ := s.AcquireLease(ctx, "b", time.Minute)
	if !ok || lb.Claim == nil || lb.Claim.ID != c.ID {
		t.Fatalf("successor: ok %v claim %+v", ok, lb.Claim)
	}
	_, _, err = s.MarkAndClaim(ctx, "r", l.Term, at, c, time.Now(), 10)
	refused("the deposed holder", err)
	if _, err := s.BeginEpoch(ctx, "b", lb.Term, "e2", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, _, err = s.MarkAndClaim(ctx, "b", lb.Term, at, c, time.Now(), 10)
	if !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("during an epoch change: %v, want ErrLeaseLost", err)
	}
	if pub, _ := s.Published(ctx, "e1", 1, 3); len(pub) != 0 {
		t.Fatalf("during an epoch change: %d events marked", len(pub))
	}
}

// testWatchOutboxWakesOnInserts: the relay's wake-up comes when events
// are inserted (a placement, a canary), not when the relay's own claim and
// mark update or delete outbox documents: those would wake it to claim
// nothing, and with the mark deferred, to fold nothing.
func testWatchOutboxWakesOnInserts(t *testing.T, e *Env) {
	for _, prune := range []bool{false, true} {
		t.Run(fmt.Sprint("prune=", prune), func(t *testing.T) {
			s := e.Sub(t).Open(store.Options{PruneOnPublish: prune})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wake, errc := s.WatchOutbox(ctx)
			woken := func(within time.Duration) bool {
				t.Helper()
				select {
				case <-wake:
					return true
				case err := <-errc:
					t.Fatalf("watch: %v", err)
				case <-time.After(within):
				}
				return false
			}
			// A change stream opened just now may miss a write made at
			// once; place until the first wake-up shows it is running.
			for i := 0; !woken(100 * time.Millisecond); i++ {
				if i == 50 {
					t.Fatal("no wake-up after 50 placements")
				}
				if _, _, err := s.Place(ctx, place(i, 0, 1), "", store.Trace{}); err != nil {
					t.Fatal(err)
				}
			}
			for woken(300 * time.Millisecond) { // wake-ups of the placements above, coalesced
			}
			l, _, _ := s.AcquireLease(ctx, "r", time.Minute)
			startEpoch(t, s, l, "e1")
			at := canvas.Position{Epoch: "e1"}
			c, evs, err := s.Claim(ctx, "r", l.Term, at, 100)
			if err != nil || len(evs) == 0 {
				t.Fatalf("claim: %d, %v", len(evs), err)
			}
			if err := s.MarkPublished(ctx, "r", l.Term, at, c, time.Now()); err != nil {
				t.Fatal(err)
			}
			if woken(300 * time.Millisecond) {
				t.Fatal("the relay's claim and mark woke the watcher")
			}
			if _, err := s.Canary(ctx, store.Trace{}); err != nil {
				t.Fatal(err)
			}
			if !woken(5 * time.Second) {
				t.Fatal("an inserted canary did not wake the watcher")
			}
		})
	}
}

// testSnapshotAcrossTiles: pixels are stored 16×16 to a document; every
// coordinate must come back exactly, with its own version.
func testSnapshotAcrossTiles(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	coords := [][2]int{{0, 0}, {15, 15}, {16, 0}, {0, 16}, {17, 33}, {63, 63}, {255, 1}}
	for i, c := range coords {
		for v := 0; v <= i%3; v++ {
			if _, _, err := s.Place(ctx, place(c[0], c[1], canvas.Color(i*1000+v)), "", store.Trace{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, px, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]int]store.Pixel{}
	for _, p := range px {
		got[[2]int{p.GX, p.GY}] = p
	}
	if len(got) != len(coords) {
		t.Fatalf("snapshot has %d pixels, want %d: %+v", len(got), len(coords), px)
	}
	for i, c := range coords {
		p, ok := got[c]
		if !ok || p.Version != int64(i%3+1) || p.Color != canvas.Color(i*1000+i%3) {
			t.Fatalf("pixel %v = %+v (present %v), want version %d colour %v", c, p, ok, i%3+1, canvas.Color(i*1000+i%3))
		}
	}
}

// testGroupCommitConcurrentPlacements runs many concurrent placements on a
// few pixels through group commit: every pixel's versions must be exactly
// 1..n, once each, with one outbox event per placement.
func testGroupCommitConcurrentPlacements(t *testing.T, e *Env) {
	s := e.Open(store.Options{GroupCommit: 16})
	const writers, each = 8, 40
	var mu sync.Mutex
	versions := map[[2]int][]int64{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				gx, gy := (w+i)%3, 20*(i%2)
				ev, _, err := s.Place(context.Background(), place(gx, gy, canvas.Color(w*1000+i)), "", store.Trace{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				versions[[2]int{gx, gy}] = append(versions[[2]int{gx, gy}], ev.Version)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	total := 0
	for px, vs := range versions {
		seen := make([]bool, len(vs)+1)
		for _, v := range vs {
			if v < 1 || v > int64(len(vs)) || seen[v] {
				t.Fatalf("pixel %v versions %v: want each of 1..%d once", px, vs, len(vs))
			}
			seen[v] = true
		}
		total += len(vs)
	}
	if _, backlog := counts(t, s); backlog != int64(total) || total != writers*each {
		t.Fatalf("%d events for %d placements (%d expected)", backlog, total, writers*each)
	}
}

// startEpoch moves a fresh lease's sequencer to epoch, as the relay does.
func startEpoch(t *testing.T, s *store.Store, l store.Lease, epoch string) {
	t.Helper()
	ctx := context.Background()
	got, err := s.BeginEpoch(ctx, l.Holder, l.Term, epoch, time.Now())
	if err != nil || got != epoch {
		t.Fatalf("begin epoch: %q %v", got, err)
	}
	if err := s.CommitEpoch(ctx, l.Holder, l.Term, epoch); err != nil {
		t.Fatal(err)
	}
}

// testNoIndexesLeavesTheOwnersIndexes: a second store opened with
// NoIndexes on a database another store owns (as the e2e verification
// does) changes no index — the owner's 2 s retention stays 2 s — and still
// reads the pixels. Without the option the reader would create its own
// TTL indexes with the default retention: MongoDB rejects that
// (IndexOptionsConflict), and a collMod would quietly change the owner's.
func testNoIndexesLeavesTheOwnersIndexes(t *testing.T, e *Env) {
	ctx := context.Background()
	owner := e.Open(store.Options{Retention: 2 * time.Second})
	if _, _, err := owner.Place(ctx, place(1, 2, 0x090000), "", store.Trace{}); err != nil {
		t.Fatal(err)
	}
	before := ttls(t, e)
	if before["outbox"] != 2 {
		t.Fatalf("the owner's outbox TTL is %d s, want 2 (test setup): %v", before["outbox"], before)
	}
	reader, err := store.New(ctx, e.Client, e.DB, func(context.Context) error { return nil }, store.Options{NoIndexes: true})
	if err != nil {
		t.Fatalf("a NoIndexes reader failed to open: %v", err)
	}
	if after := ttls(t, e); !equalTTLs(before, after) {
		t.Errorf("opening a NoIndexes reader changed the indexes: before %v, after %v", before, after)
	}
	_, px, err := reader.Snapshot(ctx)
	if err != nil || len(px) != 1 || px[0].GX != 1 || px[0].GY != 2 {
		t.Errorf("the reader's snapshot: %v %+v, want the one pixel at (1,2)", err, px)
	}
}

// ttls maps "collection" (and "collection.index" for every other index)
// to its expireAfterSeconds; -1 for an index without one.
func ttls(t *testing.T, e *Env) map[string]int32 {
	t.Helper()
	out := map[string]int32{}
	db := e.Client.Database(e.DB)
	names, err := db.ListCollectionNames(context.Background(), bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	for _, coll := range names {
		cur, err := db.Collection(coll).Indexes().List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var specs []struct {
			Name               string `bson:"name"`
			ExpireAfterSeconds *int32 `bson:"expireAfterSeconds"`
		}
		if err := cur.All(context.Background(), &specs); err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			v := int32(-1)
			if s.ExpireAfterSeconds != nil {
				v = *s.ExpireAfterSeconds
			}
			key := coll + "." + s.Name
			if s.ExpireAfterSeconds != nil && coll == "outbox" {
				key = coll
			}
			out[key] = v
		}
	}
	return out
}

func equalTTLs(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// testCanvasesShareADatabaseApart: two stores of different canvases on one
// database see only their own canvas: backlog, pending events, claims,
// marking, published batches, requeueing into a new epoch, the lease,
// idempotency keys and the snapshot. (Before outbox queries were filtered
// by canvas, one relay would have published the other canvas's events.)
func testCanvasesShareADatabaseApart(t *testing.T, e *Env) {
	ctx := context.Background()
	a, b := e.Open(store.Options{Canvas: "a"}), e.Open(store.Options{Canvas: "b"})
	ids := map[*store.Store]map[string]bool{a: {}, b: {}}
	for i := range 6 {
		for _, s := range []*store.Store{a, b} {
			ev, _, err := s.Place(ctx, place(i, 0, canvas.Color(i)), fmt.Sprint("k", i), store.Trace{})
			if err != nil {
				t.Fatal(err)
			}
			ids[s][ev.ID] = true
		}
	}
	if _, err := b.Canary(ctx, store.Trace{}); err != nil {
		t.Fatal(err)
	}
	own := func(s *store.Store, what string, evs []canvas.Event) {
		t.Helper()
		for _, ev := range evs {
			if ev.Kind == canvas.KindPixel && !ids[s][ev.ID] {
				t.Fatalf("canvas %s: %s holds %s, an event of the other canvas", s.Canvas(), what, ev.ID)
			}
		}
	}
	if n, _, err := a.Backlog(ctx); err != nil || n != 6 {
		t.Fatalf("canvas a backlog %d (%v), want its own 6", n, err)
	}
	if n, _, err := b.Backlog(ctx); err != nil || n != 7 {
		t.Fatalf("canvas b backlog %d (%v), want its own 6 and a canary", n, err)
	}
	pending, err := a.Pending(ctx, 100)
	if err != nil || len(pending) != 6 {
		t.Fatalf("canvas a pending: %d (%v), want 6", len(pending), err)
	}
	own(a, "Pending", pending)

	la, ok, err := a.AcquireLease(ctx, "ra", time.Minute)
	if err != nil || !ok {
		t.Fatalf("lease of a: %v %v", ok, err)
	}
	if _, ok, err := b.AcquireLease(ctx, "rb", time.Minute); err != nil || !ok {
		t.Fatalf("lease of b while a's is held: %v %v (one lease per canvas)", ok, err)
	}
	startEpoch(t, a, la, "ea")
	at := canvas.Position{Epoch: "ea"}
	c, evs, err := a.Claim(ctx, "ra", la.Term, at, 100)
	if err != nil || len(evs) != 6 || len(c.IDs) != 6 {
		t.Fatalf("canvas a claimed %d (%v), want its own 6", len(evs), err)
	}
	own(a, "Claim", evs)
	again, err := a.ClaimEvents(ctx, c)
	if err != nil || len(again) != 6 {
		t.Fatalf("canvas a claim events: %d %v", len(again), err)
	}
	if err := a.MarkPublished(ctx, "ra", la.Term, at, c, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := b.Backlog(ctx); n != 7 {
		t.Fatalf("marking a's claim changed b's backlog to %d, want 7", n)
	}
	pub, err := a.Published(ctx, "ea", 1, 100)
	if err != nil || len(pub) != 6 {
		t.Fatalf("canvas a published %d (%v), want 6", len(pub), err)
	}
	own(a, "Published", pub)
	if pub, err := b.Published(ctx, "ea", 1, 100); err != nil || len(pub) != 0 {
		t.Fatalf("canvas b sees %d events published in a's epoch (%v), want none", len(pub), err)
	}

	// b publishes its own under the same epoch name: the batch records of
	// both canvases live side by side.
	lb, _, _ := b.AcquireLease(ctx, "rb", time.Minute)
	startEpoch(t, b, lb, "ea")
	cb, evsB, err := b.Claim(ctx, "rb", lb.Term, at, 100)
	if err != nil || len(evsB) != 7 {
		t.Fatalf("canvas b claimed %d (%v), want its own 7", len(evsB), err)
	}
	own(b, "Claim", evsB)
	if err := b.MarkPublished(ctx, "rb", lb.Term, at, cb, time.Now()); err != nil {
		t.Fatalf("canvas b marks its claim in an epoch of the same name: %v", err)
	}
	if pub, err := b.Published(ctx, "ea", 1, 100); err != nil || len(pub) != 7 {
		t.Fatalf("canvas b published %d (%v), want 7", len(pub), err)
	}

	// A new epoch of a requeues only a's published events.
	if _, err := a.BeginEpoch(ctx, "ra", la.Term, "ea2", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	n, more, err := a.Requeue(ctx, "ra", la.Term, 100)
	if err != nil || n != 6 || more {
		t.Fatalf("canvas a requeued %d (more %v, %v), want its own 6", n, more, err)
	}
	if nb, _, _ := b.Backlog(ctx); nb != 0 {
		t.Fatalf("a's requeue gave canvas b a backlog of %d, want 0", nb)
	}

	_, pa, err := a.Snapshot(ctx)
	if err != nil || len(pa) != 6 {
		t.Fatalf("canvas a snapshot: %d pixels (%v), want 6", len(pa), err)
	}
	for _, p := range pa {
		if p.Version != 1 {
			t.Fatalf("canvas a pixel %+v: version %d, want 1 (b's writes to the same pixel are not a's)", p, p.Version)
		}
	}
	// Each canvas wrote its own events under the same keys above, and a
	// retry answers from its own canvas's record.
	for _, s := range []*store.Store{a, b} {
		if len(ids[s]) != 6 {
			t.Fatalf("canvas %s wrote %d events under keys k0..k5, want 6", s.Canvas(), len(ids[s]))
		}
		ev, replayed, err := s.Place(ctx, place(0, 0, 0), "k0", store.Trace{})
		if err != nil || !replayed || !ids[s][ev.ID] {
			t.Fatalf("canvas %s retries k0: %s replayed=%v %v, want its own event", s.Canvas(), ev.ID, replayed, err)
		}
	}
}

// testChangedTTLAppliesAtNextOpen: a store opened on a database whose TTL
// indexes another store made with other values (a restart with another
// RETENTION or idempotency TTL) opens (on MongoDB it failed with
// IndexOptionsConflict before), and the TTL indexes then carry the new
// values; opening again with the same values changes nothing.
func testChangedTTLAppliesAtNextOpen(t *testing.T, e *Env) {
	check := func(ret, idem time.Duration) {
		t.Helper()
		e.Open(store.Options{Retention: ret, IdempotencyTTL: idem})
		for _, c := range []struct {
			coll, field string
			want        time.Duration
		}{{"outbox", "publishedAt", ret}, {"batches", "publishedAt", ret}, {"idempotency", "createdAt", idem}} {
			if got := ttlOf(t, e, c.coll, c.field); got != c.want.Seconds() {
				t.Errorf("%s.%s TTL %vs, want %vs", c.coll, c.field, got, c.want.Seconds())
			}
		}
	}
	check(time.Hour, 2*time.Hour)
	check(3*time.Hour, 30*time.Minute)
	check(3*time.Hour, 30*time.Minute)
}

// ttlOf returns coll's TTL on field in seconds (-1: no TTL index on it).
func ttlOf(t *testing.T, e *Env, coll, field string) float64 {
	t.Helper()
	cur, err := e.Client.Database(e.DB).Collection(coll).Indexes().List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var specs []struct {
		Key                bson.D   `bson:"key"`
		ExpireAfterSeconds *float64 `bson:"expireAfterSeconds"`
	}
	if err := cur.All(context.Background(), &specs); err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if len(sp.Key) == 1 && sp.Key[0].Key == field && sp.ExpireAfterSeconds != nil {
			return *sp.ExpireAfterSeconds
		}
	}
	return -1
}

// testIdempotencyKeysAreScopedPerClient: the same key from two clients is
// two keys: neither replays the other's answer nor conflicts with it.
func testIdempotencyKeysAreScopedPerClient(t *testing.T, e *Env) {
	s := e.Open(store.Options{})
	ctx := context.Background()
	a, replayed, err := s.Place(ctx, place(1, 1, 0x111111), store.ScopedKey("198.51.100.1", "k"), store.Trace{})
	if err != nil || replayed {
		t.Fatalf("client A: %v replayed=%v", err, replayed)
	}
	b, replayed, err := s.Place(ctx, place(2, 2, 0x222222), store.ScopedKey("198.51.100.2", "k"), store.Trace{})
	if err != nil || replayed || b.ID == a.ID {
		t.Fatalf("client B's same key: %+v err=%v replayed=%v; want its own write, not A's answer nor a conflict", b, err, replayed)
	}
	again, replayed, err := s.Place(ctx, place(1, 1, 0x111111), store.ScopedKey("198.51.100.1", "k"), store.Trace{})
	if err != nil || !replayed || again.ID != a.ID {
		t.Fatalf("client A's retry: %+v err=%v replayed=%v; want A's answer", again, err, replayed)
	}
	if _, backlog := counts(t, s); backlog != 2 {
		t.Fatalf("%d events, want 2", backlog)
	}
}

// testIdempotencyKeysExpire: a key older than IdempotencyTTL is forgotten.
// (The test clock starts at the real time, so that no engine's own expiry
// of old records runs into the test's.)
func testIdempotencyKeysExpire(t *testing.T, e *Env) {
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := e.Open(store.Options{IdempotencyTTL: time.Hour, Now: clock})
	ctx := context.Background()
	key := store.ScopedKey("198.51.100.1", "k")
	first, _, err := s.Place(ctx, place(1, 1, 0x111111), key, store.Trace{})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(59 * time.Minute)
	mu.Unlock()
	if ev, replayed, _ := s.Place(ctx, place(1, 1, 0x111111), key, store.Trace{}); !replayed || ev.ID != first.ID {
		t.Fatalf("within the TTL: replayed=%v", replayed)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	ev, replayed, err := s.Place(ctx, place(1, 1, 0x111111), key, store.Trace{})
	if err != nil || replayed || ev.ID == first.ID {
		t.Fatalf("after the TTL: %+v replayed=%v err=%v; want a new write", ev, replayed, err)
	}
}
