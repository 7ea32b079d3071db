package store

import (
	"context"
	"path/filepath"
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
