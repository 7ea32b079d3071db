package store

import (
	"context"
	"errors"
	"testing"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

func openTest(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), "", "", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func newReq(s *Store, gx, gy int, c canvas.Color, key string) *placeReq {
	p := canvas.Placement{GX: gx, GY: gy, Color: c}
	r := &placeReq{ctx: context.Background(), p: p, idemKey: key, hash: placementHash(p), err: errNotPlaced}
	if key != "" {
		r.idem = s.idemRefFor(key)
	}
	return r
}

// TestPlaceBatchAnswersEachCaller writes one batch mixing plain placements,
// the same pixel twice, a key used before with another pixel (conflict), and a
// key used twice inside the batch (replay, and conflict for another pixel):
// each caller gets its own answer, as if they had run one after another.
func TestPlaceBatchAnswersEachCaller(t *testing.T) {
	s := openTest(t, Options{})
	ctx := context.Background()
	if _, _, err := s.Place(ctx, canvas.Placement{GX: 1, GY: 1, Color: 0x111111}, "old", Trace{}); err != nil {
		t.Fatal(err)
	}
	a := newReq(s, 2, 2, 0xAA0000, "")
	b := newReq(s, 2, 2, 0xBB0000, "")   // same pixel as a, after it
	c := newReq(s, 40, 3, 0xCC0000, "k") // another tile
	d := newReq(s, 9, 9, 0xDD0000, "old")
	e := newReq(s, 40, 3, 0xCC0000, "k") // c's key and placement
	f := newReq(s, 41, 3, 0xFF0000, "k") // c's key, another pixel
	s.placeBatch(ctx, []*placeReq{a, b, c, d, e, f})

	for name, r := range map[string]*placeReq{"a": a, "b": b, "c": c} {
		if r.err != nil || r.replayed || r.ev.ID == "" {
			t.Fatalf("%s: %+v err=%v replayed=%v, want a new event", name, r.ev, r.err, r.replayed)
		}
	}
	if a.ev.Version != 1 || b.ev.Version != 2 || a.ev.Color != 0xAA0000 || b.ev.Color != 0xBB0000 {
		t.Fatalf("same pixel twice: a=%+v b=%+v, want versions 1, 2 with their own colours", a.ev, b.ev)
	}
	if canvas.ErrorCode(d.err) != canvas.EConflict || canvas.ErrorCode(f.err) != canvas.EConflict {
		t.Fatalf("d err %v, f err %v; want conflicts", d.err, f.err)
	}
	if e.err != nil || !e.replayed || e.ev.ID != c.ev.ID || e.ev.Version != c.ev.Version {
		t.Fatalf("e: %+v err=%v replayed=%v, want c's event %s replayed", e.ev, e.err, e.replayed, c.ev.ID)
	}
	pending, err := s.Pending(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(pending) != 4 { // "old", a, b, c
		t.Fatalf("%d pending events, want 4: %+v", len(pending), pending)
	}
	_, px, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]int]Pixel{}
	for _, p := range px {
		got[[2]int{p.GX, p.GY}] = p
	}
	if p := got[[2]int{2, 2}]; p.Color != 0xBB0000 || p.Version != 2 {
		t.Fatalf("pixel 2,2 is %+v, want b's colour at version 2", p)
	}
	if len(got) != 3 {
		t.Fatalf("painted %v, want 1,1 2,2 40,3", got)
	}
	// The batch's key is remembered like a single placement's.
	ev, replayed, err := s.Place(ctx, canvas.Placement{GX: 40, GY: 3, Color: 0xCC0000}, "k", Trace{})
	if err != nil || !replayed || ev.ID != c.ev.ID {
		t.Fatalf("retry of k: %+v replayed=%v err=%v", ev, replayed, err)
	}
}

// TestPlaceBatchFailureFailsEveryCaller: a failure inside the transaction
// answers every caller in the batch with it and writes nothing of any.
func TestPlaceBatchFailureFailsEveryCaller(t *testing.T) {
	boom := errors.New("injected failure")
	var fail bool
	s := openTest(t, Options{Failpoint: func(name string) error {
		if fail && name == "place:after-pixel" {
			return boom
		}
		return nil
	}})
	ctx := context.Background()
	fail = true
	reqs := []*placeReq{newReq(s, 0, 0, 0x010101, ""), newReq(s, 0, 0, 0x020202, "k1"), newReq(s, 63, 63, 0x030303, "k2")}
	s.placeBatch(ctx, reqs)
	for i, r := range reqs {
		if !errors.Is(r.err, boom) || canvas.ErrorCode(r.err) != canvas.EUnavailable || r.ev.ID != "" {
			t.Fatalf("request %d: ev %+v err %v, want the injected failure as unavailable", i, r.ev, r.err)
		}
	}
	_, px, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := s.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(px) != 0 || n != 0 {
		t.Fatalf("%d pixels, %d events after the failed batch; want none", len(px), n)
	}
	fail = false
	ev, replayed, err := s.Place(ctx, canvas.Placement{GX: 0, GY: 0, Color: 0x020202}, "k1", Trace{})
	if err != nil || replayed || ev.Version != 1 {
		t.Fatalf("k1 after the failed batch: %+v replayed=%v err=%v; want a first write at version 1", ev, replayed, err)
	}
}

// TestPlaceBatchSkipsCallersThatGaveUp: a caller whose context ended while it
// queued is answered with that and not written; the others are.
func TestPlaceBatchSkipsCallersThatGaveUp(t *testing.T) {
	s := openTest(t, Options{GroupCommit: 8})
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	a, b := newReq(s, 1, 0, 0x0000AA, ""), newReq(s, 2, 0, 0x0000BB, "")
	b.ctx = gone
	s.runPlaces([]*placeReq{b, a})
	if a.err != nil || a.ev.Version != 1 {
		t.Fatalf("live caller: %+v %v", a.ev, a.err)
	}
	if !errors.Is(b.err, context.Canceled) || b.ev.ID != "" {
		t.Fatalf("cancelled caller: %+v %v, want context.Canceled", b.ev, b.err)
	}
	if n, _, _ := s.Backlog(context.Background()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}
