package store

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/mongo"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
)

// writeConflicts is a ConflictModel of MongoDB's snapshot isolation with
// first-writer-wins: an attempt's write to a document conflicts when another
// attempt holds an uncommitted write to it, or committed a write to it after
// this attempt began. The embedded engine runs write transactions one at a
// time, so an attempt begins (Begin is called) before it waits for the
// engine: attempts that would run side by side on a replica set overlap here
// in time, and whichever writes the tile second conflicts. It is a conflict
// model, not a coin: without overlapping writers to one document nothing
// ever conflicts.
type writeConflicts struct {
	mu        sync.Mutex
	clock     uint64
	owner     map[string]*conflictAttempt // uncommitted writes
	committed map[string]uint64           // doc → clock of its last commit
	conflicts atomic.Int64
}

func newWriteConflicts() *writeConflicts {
	return &writeConflicts{owner: map[string]*conflictAttempt{}, committed: map[string]uint64{}}
}

type conflictAttempt struct {
	m     *writeConflicts
	start uint64
	wrote []string
}

func (m *writeConflicts) Begin() ConflictAttempt {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	return &conflictAttempt{m: m, start: m.clock}
}

// errWriteConflict is what MongoDB raises for a document-level conflict
// inside a transaction.
var errWriteConflict = mongo.CommandError{Code: 112, Name: "WriteConflict", Labels: []string{"TransientTransactionError"},
	Message: "WriteConflict error: this operation conflicted with another operation. Please retry your operation or multi-document transaction."}

func (a *conflictAttempt) Write(doc string) error {
	m := a.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.owner[doc]; (o != nil && o != a) || m.committed[doc] > a.start {
		m.conflicts.Add(1)
		return errWriteConflict
	}
	m.owner[doc] = a
	a.wrote = append(a.wrote, doc)
	return nil
}

func (a *conflictAttempt) End(committed bool) {
	m := a.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	for _, doc := range a.wrote {
		if committed {
			m.committed[doc] = m.clock
		}
		if m.owner[doc] == a {
			delete(m.owner, doc)
		}
	}
}

// TestWriteConflictModel: the model raises a labelled WriteConflict for the
// second of two overlapping attempts on one document, and nothing for
// attempts that do not overlap or touch other documents.
func TestWriteConflictModel(t *testing.T) {
	m := newWriteConflicts()
	a, b := m.Begin(), m.Begin()
	if err := a.Write("pixels/t"); err != nil {
		t.Fatal(err)
	}
	if err := b.Write("pixels/u"); err != nil {
		t.Fatalf("another document conflicted: %v", err)
	}
	if err := b.Write("pixels/t"); !hasLabel(err, "TransientTransactionError") {
		t.Fatalf("a second writer while the first is in flight: %v, want a transient WriteConflict", err)
	}
	b.End(false)
	c := m.Begin() // begins before a commits
	a.End(true)
	if err := c.Write("pixels/t"); err == nil {
		t.Fatal("a write to a document committed after the attempt began did not conflict")
	}
	c.End(false)
	d := m.Begin() // after a committed
	if err := d.Write("pixels/t"); err != nil {
		t.Fatalf("an attempt that began after the commit conflicted: %v", err)
	}
	d.End(true)
}

// hotWrites places n pixels on random pixels of tile (0,0) through stores,
// at most inflight at once (round robin over stores), and returns the
// answers' errors.
func hotWrites(stores []*Store, n, inflight int, pace time.Duration) (ok int, failed []error, elapsed time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, inflight)
	start := time.Now()
	for i := range n {
		if pace > 0 {
			if d := time.Until(start.Add(time.Duration(i) * pace)); d > 0 {
				time.Sleep(d)
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			p := canvas.Placement{GX: rand.IntN(tileSize), GY: rand.IntN(tileSize), Color: canvas.Color(i)}
			_, _, err := stores[i%len(stores)].Place(context.Background(), p, "", Trace{})
			mu.Lock()
			if err != nil {
				failed = append(failed, err)
			} else {
				ok++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return ok, failed, time.Since(start)
}

// openShared opens procs stores on one embedded engine (API processes on one
// database) with the conflict model m.
func openShared(tb testing.TB, procs int, opts Options) []*Store {
	tb.Helper()
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, lungo.Options{Store: lungo.NewMemoryStore()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(engine.Close)
	var out []*Store
	for range procs {
		s, err := New(ctx, client, "pixelflow", func(context.Context) error { return nil }, opts)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestHotTileDoesNotConflictWithItself: 16 concurrent writers on one tile
// through one store, with MongoDB's write conflicts modelled. Placements
// share transactions by default (group commit), so one process never has two
// transactions on a tile in flight: nothing conflicts and nothing fails.
// Without group commit every placement was its own transaction, they
// conflicted with each other, and callers got 503s once the retry budget
// ran out.
func TestHotTileDoesNotConflictWithItself(t *testing.T) {
	m := newWriteConflicts()
	s := openShared(t, 1, Options{Conflicts: m, Logger: slog.New(slog.DiscardHandler)})[0]
	ok, failed, _ := hotWrites([]*Store{s}, 800, 16, 0)
	if len(failed) > 0 || ok != 800 {
		t.Fatalf("%d of 800 placements failed (first: %v); %d write conflicts", len(failed), failed[0], m.conflicts.Load())
	}
	if n := m.conflicts.Load(); n != 0 {
		t.Fatalf("%d write conflicts inside one process", n)
	}
}

// BenchmarkHotTile offers writes at 1,000/s (open loop: each is due at its
// time, up to 256 in flight) to random pixels of one 16×16 tile, with
// MongoDB's write conflicts modelled (writeConflicts), through 1 or 2 stores
// on one engine (API processes on one database), with and without group
// commit. It reports the acknowledged writes/s, the 503s (answers the API
// turns into 503: the retry budget ran out), conflicts and retries per
// write. Run: go test -run '^$' -bench HotTile -benchtime 5000x ./internal/store/
func BenchmarkHotTile(b *testing.B) {
	for _, c := range []struct {
		procs, group int
	}{{1, -1}, {1, 0}, {2, -1}, {2, 0}} {
		name := fmt.Sprintf("procs=%d/group-commit=%v", c.procs, c.group == 0)
		b.Run(name, func(b *testing.B) {
			m := newWriteConflicts()
			stores := openShared(b, c.procs, Options{Conflicts: m, GroupCommit: c.group, PruneOnPublish: true, Logger: slog.New(slog.DiscardHandler)})
			stop := drain(b, stores[0])
			b.ResetTimer()
			cpu0 := cputime.Process()
			ok, failed, elapsed := hotWrites(stores, b.N, 256, time.Second/1000)
			cpu := cputime.Process() - cpu0
			b.StopTimer()
			stop()
			if n, _, err := stores[0].Backlog(context.Background()); err == nil {
				b.ReportMetric(float64(n), "backlog-at-end")
			}
			var retries int64
			for _, s := range stores {
				retries += s.Retries()
			}
			for _, err := range failed {
				if canvas.ErrorCode(err) != canvas.EUnavailable {
					b.Fatalf("a placement failed with %v, not 503", err)
				}
			}
			b.ReportMetric(float64(ok)/elapsed.Seconds(), "writes/s")
			b.ReportMetric(float64(len(failed)), "503s")
			b.ReportMetric(float64(m.conflicts.Load())/float64(b.N), "conflicts/write")
			b.ReportMetric(float64(retries)/float64(b.N), "retries/write")
			if cpu > 0 {
				// CPU, unlike wall time, hardly moves with other load on a
				// shared machine: writes/s at full use of one core is
				// 1e6 / cpu-µs/write.
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/write")
			}
		})
	}
}

// drain claims and marks (pruning) what the benchmark writes, as the relay
// would, so the outbox stays small; it returns a function that stops it.
func drain(tb testing.TB, s *Store) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, ok, err := s.AcquireLease(ctx, "bench", time.Hour)
		if err != nil || !ok {
			tb.Errorf("lease: %v %v", ok, err)
			return
		}
		pos := l.Position
		for ctx.Err() == nil {
			c, evs, err := s.Claim(ctx, "bench", l.Term, pos, 4096)
			if err != nil {
				if ctx.Err() == nil {
					tb.Errorf("claim: %v", err)
				}
				return
			}
			if len(evs) == 0 {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			if err := s.MarkPublished(ctx, "bench", l.Term, pos, c, time.Now()); err != nil {
				if ctx.Err() == nil {
					tb.Errorf("mark: %v", err)
				}
				return
			}
			pos.Seq = c.Last()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}
