package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/256dpi/lungo"
	"go.mongodb.org/mongo-driver/bson"
)

// openEngine opens a memory engine with the embedded store's oplog bounds.
func openEngine(t *testing.T) (lungo.IClient, *lungo.Engine) {
	t.Helper()
	client, engine, err := lungo.Open(context.Background(), lungo.Options{
		Store:        lungo.NewMemoryStore(),
		MinOplogSize: 16,
		MaxOplogSize: 128,
		MinOplogAge:  time.Nanosecond,
		MaxOplogAge:  time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(engine.Close)
	return client, engine
}

func oplogLen(e *lungo.Engine) int {
	return len(e.Catalog().Namespaces[lungo.Oplog].Documents.List)
}

// The vendored lungo's oplog stays within MaxOplogSize even within one
// second (upstream keeps every entry of the current second, so the oplog —
// copied by every write — grew with the write rate), and a change stream
// that has not read its events yet keeps them: it reads every one without
// losing its position.
func TestOplogBoundedAndStreamsKeepTheirPlace(t *testing.T) {
	ctx := context.Background()
	client, engine := openEngine(t)
	coll := client.Database("db").Collection("c")
	start := time.Now()
	for i := range 1000 {
		if _, err := coll.InsertOne(ctx, bson.M{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := oplogLen(engine); n > 128 {
		t.Fatalf("oplog holds %d entries after 1,000 writes in %s, want at most 128", n, time.Since(start))
	}

	cs, err := coll.Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	for i := range 1000 {
		if _, err := coll.InsertOne(ctx, bson.M{"j": i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := oplogLen(engine); n < 1000 {
		t.Fatalf("oplog holds %d entries while a stream has not read 1,000, want them all", n)
	}
	for i := range 1000 {
		if !cs.Next(ctx) {
			t.Fatalf("stream ended after %d of 1,000 events: %v", i, cs.Err())
		}
	}
	// Read: the next write lets the cleanup drop them.
	if _, err := coll.InsertOne(ctx, bson.M{"k": 1}); err != nil {
		t.Fatal(err)
	}
	if n := oplogLen(engine); n > 128 {
		t.Fatalf("oplog holds %d entries once the stream has read them, want at most 128", n)
	}
}
