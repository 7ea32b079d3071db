package store_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/256dpi/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
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

// An update counts as modifying a document exactly when the document's
// BSON bytes change (MongoDB's nModified), which the vendored lungo now
// decides field by field instead of marshalling both versions: the same
// value is no change, a value of another type or another bit pattern is.
func TestUpdateModifiedFollowsBytes(t *testing.T) {
	ctx := context.Background()
	client, _ := openEngine(t)
	coll := client.Database("db").Collection("c")
	at := time.Date(2026, 11, 29, 1, 2, 3, 4e6, time.UTC)
	oid := primitive.NewObjectID()
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}, {Key: "i", Value: int32(1)}, {Key: "f", Value: 0.0},
		{Key: "s", Value: "x"}, {Key: "d", Value: bson.D{{Key: "x", Value: "y"}, {Key: "n", Value: int64(2)}}},
		{Key: "a", Value: bson.A{int32(1), "two"}}, {Key: "t", Value: at}, {Key: "o", Value: oid},
		{Key: "b", Value: primitive.Binary{Subtype: 0, Data: []byte{1, 2}}}, {Key: "z", Value: nil}, {Key: "ok", Value: true}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		set      bson.D
		modified int64
	}{
		{bson.D{{Key: "i", Value: int32(1)}}, 0},
		{bson.D{{Key: "f", Value: 0.0}, {Key: "s", Value: "x"}, {Key: "ok", Value: true}, {Key: "z", Value: nil}}, 0},
		{bson.D{{Key: "d", Value: bson.D{{Key: "x", Value: "y"}, {Key: "n", Value: int64(2)}}}}, 0},
		{bson.D{{Key: "a", Value: bson.A{int32(1), "two"}}, {Key: "t", Value: at}, {Key: "o", Value: oid}}, 0},
		{bson.D{{Key: "b", Value: primitive.Binary{Subtype: 0, Data: []byte{1, 2}}}}, 0},
		{bson.D{{Key: "i", Value: int64(1)}}, 1},                                                    // same number, other type
		{bson.D{{Key: "f", Value: math.Copysign(0, -1)}}, 1},                                        // -0 is other bits
		{bson.D{{Key: "d.n", Value: int64(3)}}, 1},                                                  // nested value
		{bson.D{{Key: "d", Value: bson.D{{Key: "n", Value: int64(3)}, {Key: "x", Value: "y"}}}}, 1}, // field order
		{bson.D{{Key: "a", Value: bson.A{int32(1), "two", int32(3)}}}, 1},
		{bson.D{{Key: "b", Value: primitive.Binary{Subtype: 0, Data: []byte{1, 3}}}}, 1},
		{bson.D{{Key: "t", Value: at.Add(time.Millisecond)}}, 1},
		{bson.D{{Key: "z", Value: "now set"}}, 1},
		{bson.D{{Key: "new", Value: "field"}}, 1},
	} {
		res, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, bson.D{{Key: "$set", Value: tc.set}})
		if err != nil {
			t.Fatal(err)
		}
		if res.MatchedCount != 1 || res.ModifiedCount != tc.modified {
			t.Errorf("$set %v: matched %d, modified %d, want modified %d", tc.set, res.MatchedCount, res.ModifiedCount, tc.modified)
		}
	}
}

// Change events share the written document with the collection instead of
// copying it; each event still shows the document as that write left it,
// whatever later writes do.
func TestChangeEventsKeepTheirDocument(t *testing.T) {
	ctx := context.Background()
	client, _ := openEngine(t)
	coll := client.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	if _, err := coll.InsertOne(ctx, bson.M{"_id": 1, "p": bson.M{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	for v := 2; v <= 3; v++ {
		if _, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, bson.M{"$set": bson.M{"p.a": v}}); err != nil {
			t.Fatal(err)
		}
	}
	for want := 1; want <= 3; want++ {
		if !cs.Next(ctx) {
			t.Fatalf("stream ended: %v", cs.Err())
		}
		var ev struct {
			OperationType string `bson:"operationType"`
			FullDocument  struct {
				ID int `bson:"_id"`
				P  struct {
					A int `bson:"a"`
				} `bson:"p"`
			} `bson:"fullDocument"`
			DocumentKey struct {
				ID int `bson:"_id"`
			} `bson:"documentKey"`
		}
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.FullDocument.P.A != want || ev.FullDocument.ID != 1 || ev.DocumentKey.ID != 1 {
			t.Fatalf("event %d (%s): %+v, want p.a = %d", want, ev.OperationType, ev, want)
		}
	}
}

// A change stream tells each event's operationType without decoding the
// event (the relay's wake-up filter reads it for every outbox change), and
// it is the one Decode gives.
func TestStreamOperationTypeWithoutDecoding(t *testing.T) {
	ctx := context.Background()
	client, _ := openEngine(t)
	coll := client.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	ot, ok := cs.(interface{ OperationType() string })
	if !ok {
		t.Fatalf("%T has no OperationType", cs)
	}
	if got := ot.OperationType(); got != "" {
		t.Fatalf("before the first event: %q, want \"\"", got)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"_id": 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, bson.M{"$set": bson.M{"a": 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := coll.DeleteOne(ctx, bson.M{"_id": 1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"insert", "update", "delete"} {
		if !cs.Next(ctx) {
			t.Fatalf("stream ended: %v", cs.Err())
		}
		var ev struct {
			OperationType string `bson:"operationType"`
		}
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if got := ot.OperationType(); got != want || ev.OperationType != want {
			t.Fatalf("OperationType %q, decoded %q, want %q", got, ev.OperationType, want)
		}
	}
}
