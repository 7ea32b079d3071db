package store_test

import (
	"context"
	"math"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
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

// watched is a collection of a fresh engine with a change stream on it.
func watched(t *testing.T) (lungo.IClient, lungo.ICollection, lungo.IChangeStream) {
	t.Helper()
	ctx := context.Background()
	client, _ := openEngine(t)
	coll := client.Database("db").Collection("c")
	cs, err := coll.Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close(ctx) })
	return client, coll, cs
}

// Change events share the written document with the collection instead of
// copying it; each event still shows the document as that write left it,
// whatever later writes do.
func TestChangeEventsKeepTheirDocument(t *testing.T) {
	ctx := context.Background()
	_, coll, cs := watched(t)
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
	_, coll, cs := watched(t)
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

// TestTransformMatchesTheMarshalRoundTrip (patch 5): a filter, update or
// projection converted directly holds exactly what marshalling it and
// decoding it back into a bson.D gives — values and their types (an int
// that fits is an int32, a time a millisecond datetime), nested documents
// as bson.D, arrays as bson.A — with map keys in some order (the round
// trip's is Go's random map order). Values of other types still go through
// the round trip.
func TestTransformMatchesTheMarshalRoundTrip(t *testing.T) {
	now := time.Date(2026, 11, 29, 11, 40, 5, 123456789, time.UTC)
	id := primitive.NewObjectID()
	type tile struct {
		ID string `bson:"_id"`
		X  int    `bson:"x,omitempty"`
	}
	for name, v := range map[string]any{
		"tile update": bson.M{
			"$set":         bson.M{"p.3_4.c": "#ff0000", "p.3_4.t": now},
			"$inc":         bson.M{"p.3_4.v": int64(1)},
			"$setOnInsert": bson.M{"canvas": "main", "tx": 3, "ty": math.MaxInt32 + 1},
		},
		"filter":     bson.M{"canvas": "main", "state": "pending", "$or": bson.A{bson.M{"version": bson.M{"$lt": int64(7)}}, bson.M{"_id": bson.M{"$lte": id}}}},
		"ordered":    bson.D{{Key: "b", Value: 1}, {Key: "a", Value: bson.D{{Key: "z", Value: -2.5}, {Key: "y", Value: nil}}}, {Key: "c", Value: true}},
		"plain map":  map[string]interface{}{"n": -3, "s": "x", "d": primitive.NewDateTimeFromTime(now), "arr": bson.A{1, "two", bson.M{"three": int32(3)}}},
		"projection": bson.M{"p.3_4.v": 1},
		"empty":      bson.M{},
		"a struct":   tile{ID: "t", X: 2},
		"a slice":    bson.M{"ids": []string{"a", "b"}},
		"a pointer":  bson.M{"at": &now},
		"a nul key":  bson.M{"a\x00b": 1},
	} {
		t.Run(name, func(t *testing.T) {
			var want bson.D
			wantErr := bsonkit.Transfer(v, &want)
			got, err := bsonkit.Transform(v)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("error %v, the round trip's %v", err, wantErr)
			}
			if err != nil {
				return
			}
			if g, w := canonical(*got), canonical(want); !reflect.DeepEqual(g, w) {
				t.Fatalf("converted\n  %#v\nthe round trip gives\n  %#v", g, w)
			}
		})
	}
}

// canonical sorts the keys of every document in v (recursively), so two
// conversions of a map compare whatever order each gave its keys.
func canonical(v any) any {
	switch x := v.(type) {
	case bson.D:
		d := make(bson.D, len(x))
		for i, e := range x {
			d[i] = bson.E{Key: e.Key, Value: canonical(e.Value)}
		}
		sort.Slice(d, func(i, j int) bool { return d[i].Key < d[j].Key })
		return d
	case bson.A:
		a := make(bson.A, len(x))
		for i, item := range x {
			a[i] = canonical(item)
		}
		return a
	default:
		return v
	}
}

// TestUpdatesShareOnlyWhatTheyLeave (patch 6): an update copies only the
// containers along its paths and shares the rest of the document with the
// version before it. Every change event must still show its document as
// its write left it, whatever later updates do, and an aborted transaction
// must leave the document as it was — through nested sets, unsets, creates
// and increments, and the updates that still clone everything (a path
// through an array, $push).
func TestUpdatesShareOnlyWhatTheyLeave(t *testing.T) {
	ctx := context.Background()
	client, coll, cs := watched(t)
	var want []bson.M // the document after each write, read back
	read := func() {
		var doc bson.M
		if err := coll.FindOne(ctx, bson.M{"_id": 1}).Decode(&doc); err != nil {
			t.Fatal(err)
		}
		want = append(want, doc)
	}
	if _, err := coll.InsertOne(ctx, bson.M{"_id": 1, "p": bson.M{"a": bson.M{"c": "x", "v": 1}, "b": bson.M{"c": "y", "v": 1}, "99": bson.M{"c": "w", "v": 1}}, "arr": bson.A{bson.M{"k": 1}, 2}}); err != nil {
		t.Fatal(err)
	}
	read()
	for _, u := range []bson.M{
		{"$set": bson.M{"p.a.c": "z", "p.a.t": 5}, "$inc": bson.M{"p.a.v": 1}},
		{"$unset": bson.M{"p.b.c": ""}},
		{"$set": bson.M{"p.99.c": "tile key"}, "$inc": bson.M{"p.99.v": 1}}, // a numeric key of a document
		{"$set": bson.M{"p.n.c": "new", "q.r": 1}},
		{"$inc": bson.M{"p.b.v": 2}, "$max": bson.M{"p.a.v": 10}},
		{"$set": bson.M{"arr.0.k": 9}},                // through an array: a whole clone
		{"$push": bson.M{"arr": 3}},                   // an array changed in place: a whole clone
		{"$set": bson.M{"p.a": bson.M{"c": "whole"}}}, // a container replaced
		{"$unset": bson.M{"p.n": ""}},
	} {
		if _, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, u); err != nil {
			t.Fatalf("%v: %v", u, err)
		}
		read()
	}
	// An aborted transaction changes nothing.
	sess, err := client.StartSession()
	if err != nil {
		t.Fatal(err)
	}
	err = lungo.WithSession(ctx, sess, func(sc lungo.ISessionContext) error {
		if err := sess.StartTransaction(); err != nil {
			return err
		}
		if _, err := coll.UpdateOne(sc, bson.M{"_id": 1}, bson.M{"$set": bson.M{"p.b.v": 100, "p.a.c": "aborted"}}); err != nil {
			return err
		}
		return sess.AbortTransaction(sc)
	})
	sess.EndSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var after bson.M
	if err := coll.FindOne(ctx, bson.M{"_id": 1}).Decode(&after); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after, want[len(want)-1]) {
		t.Fatalf("after an aborted transaction %v, want %v", after, want[len(want)-1])
	}
	for i, w := range want {
		if !cs.Next(ctx) {
			t.Fatalf("stream ended: %v", cs.Err())
		}
		var ev struct {
			FullDocument bson.M `bson:"fullDocument"`
		}
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ev.FullDocument, w) {
			t.Fatalf("event %d shows %v, its write left %v", i, ev.FullDocument, w)
		}
	}
}

// The vendored lungo's Options.Logged (patch 9): writes to a namespace it
// does not log neither reach the oplog nor any change stream; writes to a
// logged one do, and a drop is logged whatever the filter says.
func TestUnloggedNamespacesStayOutOfTheOplog(t *testing.T) {
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, lungo.Options{
		Store:  lungo.NewMemoryStore(),
		Logged: func(h lungo.Handle) bool { return h[1] == "watched" },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(engine.Close)
	db := client.Database("db")
	cs, err := db.Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	quiet, watched := db.Collection("quiet"), db.Collection("watched")
	for _, coll := range []lungo.ICollection{quiet, watched} {
		if _, err := coll.InsertOne(ctx, bson.M{"_id": 1, "n": 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := coll.UpdateOne(ctx, bson.M{"_id": 1}, bson.M{"$set": bson.M{"n": 2}}); err != nil {
			t.Fatal(err)
		}
		if _, err := coll.DeleteOne(ctx, bson.M{"_id": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := quiet.Drop(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < 4 {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := cs.Next(tctx)
		cancel()
		if !ok {
			break
		}
		var ev struct {
			Op string `bson:"operationType"`
			NS struct {
				Coll string `bson:"coll"`
			} `bson:"ns"`
		}
		if err := cs.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.NS.Coll+"."+ev.Op)
	}
	want := []string{"watched.insert", "watched.update", "watched.delete", "quiet.drop"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the stream saw %v, want %v", got, want)
	}
	if n := oplogLen(engine); n != len(want) {
		t.Errorf("the oplog holds %d entries, want %d", n, len(want))
	}
}
