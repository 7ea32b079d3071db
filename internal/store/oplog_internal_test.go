package store

import (
	"context"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// TestOnlyTheOutboxIsLogged: the embedded engine as the store opens it logs
// writes to the outbox alone (the one collection WatchOutbox watches), so
// a placement, its claim and its mark leave only outbox entries in the
// oplog, and a stream on the outbox still sees the placement's insert.
func TestOnlyTheOutboxIsLogged(t *testing.T) {
	ctx := context.Background()
	client, engine, err := lungo.Open(ctx, engineOptions(lungo.NewMemoryStore()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, client, "pixelflow", func(context.Context) error { engine.Close(); return nil }, Options{PruneOnPublish: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	// A stream is open once Watch returns (WatchOutbox opens its own in
	// a goroutine, which a test could only wait for by sleeping).
	cs, err := s.db.Collection(cOutbox).Watch(ctx, []bson.M{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close(ctx)
	lease, pos := leadEpoch(t, s, "r", "e1")
	if _, _, err := s.Place(ctx, canvas.Placement{GX: 1, GY: 2, Color: 3}, "key", Trace{}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !cs.Next(wctx) || operationType(cs) != "insert" {
		t.Fatalf("the outbox stream did not see the placement's insert (%v)", cs.Err())
	}
	c, _, err := s.Claim(ctx, "r", lease.Term, pos, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPublished(ctx, "r", lease.Term, pos, c, time.Now()); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, doc := range engine.Catalog().Namespaces[lungo.Oplog].Documents.List {
		ns, op := bsonkit.Get(doc, "ns.coll"), bsonkit.Get(doc, "operationType")
		if ns != cOutbox {
			t.Errorf("the oplog holds a %v on %v", op, ns)
		}
		ops = append(ops, op.(string))
	}
	if len(ops) != 2 || ops[0] != "insert" || ops[1] != "delete" {
		t.Errorf("the oplog holds %v, want the outbox's insert and delete", ops)
	}
}
