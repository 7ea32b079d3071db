package store

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
)

// TestChangedTTLAppliesAtNextStart is in the contract suite
// (storetest: ChangedTTLAppliesAtNextOpen), run on every engine.

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

// TestEmbeddedEngineKeepsNoQueryIndexes: the embedded engine scans for every
// query, so an index there only costs writes; a store on it has none of the
// query indexes, and drops those an earlier version made. The _id and TTL
// indexes (uniqueness, expiry) stay.
func TestEmbeddedEngineKeepsNoQueryIndexes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.lungo")
	check := func(s *Store, when string) {
		t.Helper()
		for _, coll := range []string{cOutbox, cPixels, cBatches, cIdempotency} {
			specs, err := s.listIndexes(ctx, coll)
			if err != nil {
				t.Fatal(err)
			}
			for _, sp := range specs {
				if sp.Name != "_id_" && sp.TTL == nil {
					t.Errorf("%s: %s has the index %s %v", when, coll, sp.Name, sp.Key)
				}
			}
		}
	}
	s, err := Open(ctx, "", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(s, "a new store")
	// As an earlier version left the file: every query index made.
	s.indexEmbedded = true
	if err := s.ensureIndexes(ctx); err != nil {
		t.Fatal(err)
	}
	specs, err := s.listIndexes(ctx, cOutbox)
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) < 5 {
		t.Fatalf("the outbox has %d indexes after indexing as on MongoDB, want the query indexes too", len(specs))
	}
	_ = s.Close(ctx)
	s, err = Open(ctx, "", path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	check(s, "reopened")
	if got := ttlFields(t, s, cIdempotency); !slices.Contains(got, "createdAt") {
		t.Errorf("idempotency TTL indexes %v, want createdAt kept", got)
	}
}

// ttlFields lists the fields of coll's TTL indexes.
func ttlFields(t *testing.T, s *Store, coll string) []string {
	t.Helper()
	specs, err := s.listIndexes(context.Background(), coll)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sp := range specs {
		if sp.TTL != nil {
			out = append(out, sp.Key[0].Key)
		}
	}
	return out
}
