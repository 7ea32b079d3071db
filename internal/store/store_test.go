package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/256dpi/lungo"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/store/storetest"
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
