package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
	"github.com/pixelflow/pixelflow/internal/harness/storetest"
	"github.com/pixelflow/pixelflow/internal/store"
)

// embedded gives a test an embedded engine of its own, in memory, tuned as
// pixelflow runs it.
func embedded(t testing.TB) lungo.IClient {
	t.Helper()
	client, closeFn, err := store.OpenEngine(context.Background(), "")
	if err != nil {
		t.Fatalf("open embedded engine: %v", err)
	}
	t.Cleanup(func() { _ = closeFn(context.Background()) })
	return client
}

// TestContractEmbedded holds the embedded engine to the store's contract
// (make test-mongo holds a real replica set to the same one).
func TestContractEmbedded(t *testing.T) { storetest.Run(t, embedded) }

func place(gx, gy int, color canvas.Color) canvas.Placement {
	return canvas.Placement{GX: gx, GY: gy, Color: color}
}

// TestFileStoreSurvivesReopen is the embedded engine's own promise: its
// file keeps everything across a restart.
func TestFileStoreSurvivesReopen(t *testing.T) {
	path := t.TempDir() + "/p.lungo"
	ctx := context.Background()
	s, err := store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, _, err := s.Place(ctx, place(i, i, 0xFFFFFF), fmt.Sprint("k", i), store.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close(ctx)
	s, err = store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	_, px, _ := s.Snapshot(ctx)
	n, _, _ := s.Backlog(ctx)
	if len(px) != 5 || n != 5 {
		t.Fatalf("after reopen: %d pixels, %d pending; want 5, 5", len(px), n)
	}
}

// TestSecondOpenOfAFileIsRefused is issue 28 item 3a: a store file is open
// in one store at a time. A second Open of the same path (here in the same
// process: flock belongs to the open file description, so it stands for
// another process too) fails naming the file and the holder's pid, and the
// first store keeps working; once it is closed the file opens again. Each
// engine holds the catalog in memory and rewrites the file on commit, so
// two of them would each acknowledge writes the other then overwrites.
func TestSecondOpenOfAFileIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.lungo")
	ctx := context.Background()
	s, err := store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := store.Open(ctx, "", path, store.Options{})
	if err == nil {
		_ = second.Close(ctx)
		_ = s.Close(ctx)
		t.Fatal("a second Open of an open store file succeeded")
	}
	t.Log(err)
	for _, want := range []string{strconv.Quote(path), "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, _, err := s.Place(ctx, place(1, 1, 0x123456), "", store.Trace{}); err != nil {
		t.Fatalf("the first store after the refused open: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s, err = store.Open(ctx, "", path, store.Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	defer s.Close(ctx)
	if _, px, _ := s.Snapshot(ctx); len(px) != 1 {
		t.Fatalf("after reopen: %d pixels, want 1", len(px))
	}
}

func BenchmarkPlace(b *testing.B) {
	s, err := store.Open(context.Background(), "", "", store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(context.Background()) })
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := s.Place(ctx, place(i%64, (i/64)%64, canvas.Color(i)), "", store.Trace{}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// mustOpen opens an embedded in-memory store for the benchmarks (behaviour
// tests are in the contract suite, storetest).
func mustOpen(tb testing.TB, opts store.Options) *store.Store {
	tb.Helper()
	s, err := store.Open(context.Background(), "", "", opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// BenchmarkPlacePainted is the write path's store work at the load test's
// steady rate, as serve does it: a 64×64 canvas painted all over (every
// tile document full), 200 placements a second, one per transaction, and
// after each the relay's claim and mark with pruning, so the outbox stays as
// short as in a running server (BenchmarkPlace lets it grow, and lungo
// copies it on every write). The rate is paced because lungo keeps every
// oplog entry of the current second and copies the oplog on every write:
// unpaced, the cost per op would depend on the machine's speed. cpu-µs/op
// is the process's CPU per placement, garbage collection included; run it
// with -benchtime 2000x (10 s).
func BenchmarkPlacePainted(b *testing.B) { benchPlacePainted(b, false) }

// BenchmarkPlacePaintedFolded is BenchmarkPlacePainted with the relay's
// deferred mark: after each placement one transaction marks the previous
// claim and claims the new event (MarkAndClaim), as the relay does under
// continuous writes, instead of a claim and a mark.
func BenchmarkPlacePaintedFolded(b *testing.B) { benchPlacePainted(b, true) }

func benchPlacePainted(b *testing.B, folded bool) {
	s := mustOpen(b, store.Options{PruneOnPublish: true})
	ctx := context.Background()
	lease, _, err := s.AcquireLease(ctx, "bench", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	pos := lease.Position
	var open store.Claim // folded: claimed, not marked yet
	publish := func() {
		if open.IDs != nil {
			c, _, err := s.MarkAndClaim(ctx, "bench", lease.Term, pos, open, time.Now(), 1024)
			if err != nil {
				b.Fatal(err)
			}
			pos.Seq, open = open.Last(), c
			return
		}
		c, _, err := s.Claim(ctx, "bench", lease.Term, pos, 1024)
		if err != nil {
			b.Fatal(err)
		}
		if folded {
			open = c
			return
		}
		if err := s.MarkPublished(ctx, "bench", lease.Term, pos, c, time.Now()); err != nil {
			b.Fatal(err)
		}
		pos.Seq += uint64(len(c.IDs))
	}
	for i := range 64 * 64 {
		if _, _, err := s.Place(ctx, place(i%64, i/64, canvas.Color(i)), "", store.Trace{}); err != nil {
			b.Fatal(err)
		}
		if i%256 == 255 {
			publish()
		}
	}
	publish()
	b.ReportAllocs()
	i, n := 0, 0
	const every = time.Second / 200
	start := time.Now()
	cpu := cputime.Process()
	for b.Loop() {
		n++
		time.Sleep(time.Until(start.Add(time.Duration(n) * every)))
		i = (i + 617) % (64 * 64) // strides over every tile
		if _, _, err := s.Place(ctx, place(i%64, i/64, canvas.Color(i)), "", store.Trace{}); err != nil {
			b.Fatal(err)
		}
		publish()
	}
	b.ReportMetric(float64((cputime.Process()-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}
