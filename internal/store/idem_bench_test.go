package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
	"github.com/pixelflow/pixelflow/internal/store"
)

// BenchmarkKeyedPlace times one placement with an Idempotency-Key on the
// embedded store, set up as `serve` runs it (group commit, published events
// pruned), while `stored` keys from 300 clients are already remembered.
// Keys are scoped per client the way the API scopes them (client, U+001F,
// key). The outbox is drained as the relay would, so only the keys differ
// between the two cases.
//
// Before per-client buckets (one document per key): 0.63 ms → 16.0 ms.
//
//	go test -run '^$' -bench KeyedPlace -benchtime 200x ./internal/store/
func BenchmarkKeyedPlace(b *testing.B) {
	for _, stored := range []int{0, 30_000} {
		b.Run(fmt.Sprintf("stored=%d", stored), func(b *testing.B) {
			s := mustOpen(b, store.Options{GroupCommit: 64, PruneOnPublish: true})
			ctx := context.Background()
			const clients = 300
			for done := 0; done < stored; {
				n := min(2000, stored-done)
				var wg sync.WaitGroup
				next := make(chan int)
				for range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range next {
							key := fmt.Sprintf("c%d\x1fpre-%d", i%clients, i)
							if _, _, err := s.Place(ctx, place(i%64, (i/64)%64, canvas.Color(i)), key, store.Trace{}); err != nil {
								b.Error(err)
							}
						}
					}()
				}
				for i := done; i < done+n; i++ {
					next <- i
				}
				close(next)
				wg.Wait()
				store.PublishAll(b, s)
				done += n
			}
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
			for i := range b.N {
				key := fmt.Sprintf("c%d\x1fbench-%d", i%clients, i)
				if _, _, err := s.Place(ctx, place(i%64, 7, canvas.Color(i)), key, store.Trace{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
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
