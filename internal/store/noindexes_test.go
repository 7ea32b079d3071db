package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/256dpi/lungo"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/pixelflow/pixelflow/internal/store"
)

// TestNoIndexesLeavesTheOwnersIndexes: a second store opened with
// NoIndexes on a database another store owns (as the e2e verification
// does) changes no index — the owner's 2 s retention stays 2 s — and still
// reads the pixels. Without the option the reader would create its own
// TTL indexes with the default retention: MongoDB rejects that
// (IndexOptionsConflict), and a collMod would quietly change the owner's.
func TestNoIndexesLeavesTheOwnersIndexes(t *testing.T) {
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, lungo.Options{Store: lungo.NewMemoryStore()})
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	noClose := func(context.Context) error { return nil }
	owner, err := store.New(ctx, client, "pixelflow", noClose, store.Options{Retention: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := owner.Place(ctx, place(1, 2, 0x090000), "", store.Trace{}); err != nil {
		t.Fatal(err)
	}
	before := ttls(t, client)
	if before["outbox"] != 2 {
		t.Fatalf("the owner's outbox TTL is %d s, want 2 (test setup): %v", before["outbox"], before)
	}

	reader, err := store.New(ctx, client, "pixelflow", noClose, store.Options{NoIndexes: true})
	if err != nil {
		t.Fatalf("a NoIndexes reader failed to open: %v", err)
	}
	if after := ttls(t, client); !equalTTLs(before, after) {
		t.Errorf("opening a NoIndexes reader changed the indexes: before %v, after %v", before, after)
	}
	_, px, err := reader.Snapshot(ctx)
	if err != nil || len(px) != 1 || px[0].GX != 1 || px[0].GY != 2 {
		t.Errorf("the reader's snapshot: %v %+v, want the one pixel at (1,2)", err, px)
	}
}

// ttls maps "collection" (and "collection.index" for every other index)
// to its expireAfterSeconds; -1 for an index without one.
func ttls(t *testing.T, client lungo.IClient) map[string]int32 {
	t.Helper()
	out := map[string]int32{}
	db := client.Database("pixelflow")
	names, err := db.ListCollectionNames(context.Background(), bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	for _, coll := range names {
		cur, err := db.Collection(coll).Indexes().List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var specs []struct {
			Name               string `bson:"name"`
			ExpireAfterSeconds *int32 `bson:"expireAfterSeconds"`
		}
		if err := cur.All(context.Background(), &specs); err != nil {
			t.Fatal(err)
		}
		for _, s := range specs {
			v := int32(-1)
			if s.ExpireAfterSeconds != nil {
				v = *s.ExpireAfterSeconds
			}
			key := coll + "." + s.Name
			if s.ExpireAfterSeconds != nil && coll == "outbox" {
				key = coll
			}
			out[key] = v
		}
	}
	return out
}

func equalTTLs(a, b map[string]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
