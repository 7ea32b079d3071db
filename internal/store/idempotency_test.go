package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// TestIdempotencyKeysAreScopedPerClient: the same key from two clients is
// two keys: neither replays the other's answer nor conflicts with it.
func TestIdempotencyKeysAreScopedPerClient(t *testing.T) {
	s := mustOpen(t, store.Options{})
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

// TestIdempotencyKeysBoundedPerClient: a client holding more keys than its
// bound loses its oldest, never another client's; its newest are kept.
func TestIdempotencyKeysBoundedPerClient(t *testing.T) {
	const perClient, buckets = 32, 8
	s := mustOpen(t, store.Options{IdempotencyKeysPerClient: perClient, IdempotencyBuckets: buckets, GroupCommit: 16})
	ctx := context.Background()
	other := store.ScopedKey("192.0.2.9", "mine")
	first, _, err := s.Place(ctx, place(0, 0, 0x010101), other, store.Trace{})
	if err != nil {
		t.Fatal(err)
	}
	const flood = 600
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += 8 {
				if _, _, err := s.Place(ctx, place(i%64, 1+i/64%8, canvas.Color(i)), store.ScopedKey("203.0.113.5", fmt.Sprint("f", i)), store.Trace{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if ev, replayed, err := s.Place(ctx, place(0, 0, 0x010101), other, store.Trace{}); err != nil || !replayed || ev.ID != first.ID {
		t.Fatalf("the other client's key after the flood: %+v replayed=%v err=%v; want its first answer", ev, replayed, err)
	}
	held := 0
	for i := range flood {
		// Asking with another pixel: a held key answers a conflict and
		// writes nothing; a forgotten one writes.
		_, _, err := s.Place(ctx, place(63, 63, 0xABCDEF), store.ScopedKey("203.0.113.5", fmt.Sprint("f", i)), store.Trace{})
		if canvas.ErrorCode(err) == canvas.EConflict {
			held++
		}
		if held > perClient { // asking re-stores forgotten keys: stop early
			break
		}
	}
	if held > perClient {
		t.Errorf("the flooding client holds more than %d keys", perClient)
	}
	// Its newest keys are still held (each bucket keeps a client's newest).
	newest := 0
	for i := flood - 1; i >= flood-4; i-- {
		if _, _, err := s.Place(ctx, place(63, 62, 0xABCDEF), store.ScopedKey("203.0.113.5", fmt.Sprint("f", i)), store.Trace{}); canvas.ErrorCode(err) == canvas.EConflict {
			newest++
		}
	}
	if newest != 4 {
		t.Errorf("%d of the client's 4 newest keys held, want 4", newest)
	}
}

// TestIdempotencyKeysExpire: a key older than IdempotencyTTL is forgotten.
func TestIdempotencyKeysExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := mustOpen(t, store.Options{IdempotencyTTL: time.Hour, Now: clock})
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
