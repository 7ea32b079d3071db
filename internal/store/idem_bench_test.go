package store_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
	"github.com/pixelflow/pixelflow/internal/store"
)

// BenchmarkKeyedPlace times one placement with an Idempotency-Key on the
// embedded store, set up as `serve` runs it (group commit, published events
// pruned), while `stored` keys from 300 clients are already remembered, in
// memory and in a file. Keys are scoped per client the way the API scopes
// them (client, U+001F, key). The outbox is drained as the relay would, so
// only the keys differ between the cases. cpu-µs/op is the process's CPU
// per keyed write; written-B/op is what the process handed to write(2) per
// keyed write (/proc/self/io wchar, file case; compactions included).
//
// Before per-client buckets (one document per key): 0.63 ms → 16.0 ms.
// Before lungo patch 10 (the file store rewrote the whole file on every
// commit) the file case at 30,000 keys was 29–51 ms a keyed write.
//
//	go test -run '^$' -bench KeyedPlace -benchtime 200x -benchmem ./internal/store/
func BenchmarkKeyedPlace(b *testing.B) {
	for _, where := range []string{"memory", "file"} {
		for _, stored := range []int{0, 3_000, 30_000} {
			b.Run(fmt.Sprintf("%s/stored=%d", where, stored), func(b *testing.B) {
				path := ""
				if where == "file" {
					path = filepath.Join(b.TempDir(), "p.lungo")
				}
				benchKeyedPlace(b, path, stored)
			})
		}
	}
}

func benchKeyedPlace(b *testing.B, path string, stored int) {
	ctx := context.Background()
	s, err := store.Open(ctx, "", path, store.Options{GroupCommit: 64, PruneOnPublish: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(ctx) })
	const clients = 300
	holdKeys(b, s, 0, stored, clients)
	// The last drain's deletions sit in lungo's oplog until they are
	// a second old, and its cleanup removes them one at a time:
	// let that happen before the clock starts.
	time.Sleep(1100 * time.Millisecond)
	for i := range 10 {
		if _, _, err := s.Place(ctx, place(i, 6, canvas.Color(i)), fmt.Sprintf("c%d\x1fwarm-%d", i, i), store.Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0, w0 := cputime.Process(), writtenBytes(b)
	for i := range b.N {
		key := fmt.Sprintf("c%d\x1fbench-%d", i%clients, i)
		if _, _, err := s.Place(ctx, place(i%64, 7, canvas.Color(i)), key, store.Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cputime.Process()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
	if path != "" {
		b.ReportMetric(float64(writtenBytes(b)-w0)/float64(b.N), "written-B/op")
	}
}

// holdKeys places keyed pixels from...to (from 64 goroutines, so group
// commit batches them), keys spread over clients the way the API scopes
// them, and drains the outbox every 2,000 as the relay would.
func holdKeys(tb testing.TB, s *store.Store, from, to, clients int) {
	tb.Helper()
	ctx := context.Background()
	for done := from; done < to; {
		n := min(2000, to-done)
		var wg sync.WaitGroup
		next := make(chan int)
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					key := fmt.Sprintf("c%d\x1fpre-%d", i%clients, i)
					if _, _, err := s.Place(ctx, place(i%64, (i/64)%64, canvas.Color(i)), key, store.Trace{}); err != nil {
						tb.Error(err)
					}
				}
			}()
		}
		for i := done; i < done+n; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		store.PublishAll(tb, s)
		done += n
	}
}

// writtenBytes is what this process has handed to write(2) so far
// (/proc/self/io wchar): on the file store, the bytes a commit costs the
// disk. -1 where /proc cannot tell.
func writtenBytes(tb testing.TB) int64 {
	tb.Helper()
	buf, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(buf), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatalf("/proc/self/io: %q: %v", line, err)
			}
			return n
		}
	}
	return -1
}

// BenchmarkSnapshotBuild reads a full 1000×1000 canvas (every pixel painted,
// seeded straight into the tiles) from the embedded store: what one
// snapshot build costs the API.
//
//	go test -run '^$' -bench SnapshotBuild -benchtime 5x ./internal/store/
func BenchmarkSnapshotBuild(b *testing.B) {
	s := mustOpen(b, store.Options{})
	i := 0
	if err := s.Seed(context.Background(), 1000, 1000, func(int, int) canvas.Color { i++; return canvas.Color(i * 2654435761 & 0xF0F0F0) }); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := cputime.Process()
	for range b.N {
		_, px, err := s.Snapshot(context.Background())
		if err != nil || len(px) != 1_000_000 {
			b.Fatalf("%d pixels, %v", len(px), err)
		}
	}
	b.ReportMetric((cputime.Process()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}
