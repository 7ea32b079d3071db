package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
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

// TestSupersededIndexesAreDropped: the indexes that earlier versions made
// and newer ones replace are dropped at start (each costs every write).
func TestSupersededIndexesAreDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.lungo")
	s, err := Open(context.Background(), "", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for coll, keys := range map[string]bson.D{
		cOutbox:  {{Key: "state", Value: 1}, {Key: "version", Value: 1}},
		cBatches: {{Key: "epoch", Value: 1}, {Key: "last", Value: 1}},
	} {
		if _, err := s.db.Collection(coll).Indexes().CreateOne(ctx, mongo.IndexModel{Keys: keys}); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close(ctx)
	s, err = Open(ctx, "", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	for _, coll := range []string{cOutbox, cBatches} {
		specs, err := s.listIndexes(ctx, coll)
		if err != nil {
			t.Fatal(err)
		}
		for _, sp := range specs {
			if sp.Name == "state_1_version_1" || sp.Name == "epoch_1_last_1" {
				t.Errorf("%s still has the superseded index %s", coll, sp.Name)
			}
		}
	}
}
