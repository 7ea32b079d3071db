package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

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
