package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// ttlOf returns coll's TTL index on field in seconds (-1: no such index).
func ttlOf(t *testing.T, s *Store, coll, field string) float64 {
	t.Helper()
	specs, err := s.listIndexes(context.Background(), coll)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range specs {
		if len(sp.Key) == 1 && sp.Key[0].Key == field && sp.TTL != nil {
			return *sp.TTL
		}
	}
	return -1
}

// TestChangedTTLAppliesAtNextStart: a store opened with one RETENTION and
// idempotency TTL, closed, and opened again with others starts (it failed
// with "existing index … has same key" before), and its TTL indexes then
// carry the new values. Opening a third time with the same values changes
// nothing.
func TestChangedTTLAppliesAtNextStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ttl.lungo")
	open := func(ret, idem time.Duration) *Store {
		t.Helper()
		s, err := Open(context.Background(), "", path, Options{Retention: ret, IdempotencyTTL: idem})
		if err != nil {
			t.Fatalf("open with RETENTION %s, idempotency TTL %s: %v", ret, idem, err)
		}
		return s
	}
	check := func(s *Store, ret, idem time.Duration) {
		t.Helper()
		for _, c := range []struct {
			coll, field string
			want        time.Duration
		}{{cOutbox, "publishedAt", ret}, {cBatches, "publishedAt", ret}, {cIdempotency, "createdAt", idem}} {
			if got := ttlOf(t, s, c.coll, c.field); got != c.want.Seconds() {
				t.Errorf("%s.%s TTL %vs, want %vs", c.coll, c.field, got, c.want.Seconds())
			}
		}
	}
	s := open(time.Hour, 2*time.Hour)
	check(s, time.Hour, 2*time.Hour)
	_ = s.Close(context.Background())

	s = open(3*time.Hour, 30*time.Minute)
	check(s, 3*time.Hour, 30*time.Minute)
	_ = s.Close(context.Background())

	s = open(3*time.Hour, 30*time.Minute)
	defer s.Close(context.Background())
	check(s, 3*time.Hour, 30*time.Minute)
}
