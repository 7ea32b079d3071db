package store

import (
	"context"
	"testing"
	"time"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/bsonkit"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// TestOnlyTheOutboxIsLogged: the embedded engine as the store opens it logs
// writes to the outbox alone (the one collection WatchOutbox watches), so
// a placement, its claim and its mark leave only outbox entries in the
// oplog, and the watch still wakes on the placement's insert.
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
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake, _ := s.WatchOutbox(wctx)
	time.Sleep(50 * time.Millisecond) // the watch is open
	lease, _, err := s.AcquireLease(ctx, "r", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := s.BeginEpoch(ctx, "r", lease.Term, "e1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitEpoch(ctx, "r", lease.Term, epoch); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Place(ctx, canvas.Placement{GX: 1, GY: 2, Color: 3}, "key", Trace{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-wake:
	case <-time.After(5 * time.Second):
		t.Fatal("the outbox watch did not wake on a placement")
	}
	pos := canvas.Position{Epoch: epoch}
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
