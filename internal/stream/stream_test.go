package stream_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

func TestIDRoundTrip(t *testing.T) {
	for _, seq := range []uint64{1, 42, 1 << 40} {
		if got, err := stream.ParseID(stream.ID(seq)); err != nil || got != seq {
			t.Errorf("seq %d: %d %v", seq, got, err)
		}
	}
	for _, bad := range []string{"0-0", "1-1", "x-0", "5", ""} {
		if _, err := stream.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) accepted", bad)
		}
	}
}

func entry(seq uint64, epoch string) stream.Entry {
	return stream.Entry{Event: canvas.Event{
		ID: "65a0000000000000000000" + string(rune('a'+seq%26)) + "0", Kind: canvas.KindPixel, GX: 3, GY: 4, Color: 0xABCDEF,
		Version: 7, CommittedAt: time.Unix(0, 1_700_000_000_123_456_789), Epoch: epoch, Seq: seq,
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}, PublishedAt: time.Unix(0, 1_700_000_000_223_456_789)}
}

func TestPublishIsFencedByEpochAndTail(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	st := stream.New(rdb, "c", 1000)
	if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1")}); !errors.Is(err, stream.ErrEpochGone) {
		t.Fatalf("publish before the epoch exists: %v", err)
	}
	if err := st.StartEpoch(ctx, 1, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1"), entry(2, "e1")}); err != nil {
		t.Fatal(err)
	}
	// A retried batch from a stale tail writes nothing.
	var tm *stream.TailMismatchError
	if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1")}); !errors.As(err, &tm) || tm.Actual != 2 {
		t.Fatalf("stale publish: %v", err)
	}
	if err := st.Publish(ctx, 1, "e0", 2, []stream.Entry{entry(3, "e0")}); !errors.Is(err, stream.ErrEpochGone) {
		t.Fatalf("publish under another epoch: %v", err)
	}
	if err := st.Publish(ctx, 1, "e1", 2, []stream.Entry{entry(4, "e1")}); err == nil {
		t.Fatal("non-contiguous batch accepted")
	}
	tail, err := st.Tail(ctx)
	if err != nil || tail != (canvas.Position{Epoch: "e1", Seq: 2}) {
		t.Fatalf("tail %+v %v", tail, err)
	}
	got, err := st.Range(ctx, 1, 0, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("range: %d %v", len(got), err)
	}
	want := entry(1, "e1")
	g := got[0]
	if g.Seq != 1 || g.ID != want.ID || g.Color != want.Color || g.Version != 7 || !g.CommittedAt.Equal(want.CommittedAt) ||
		!g.PublishedAt.Equal(want.PublishedAt) || g.TraceParent != want.TraceParent || g.GX != 3 || g.GY != 4 || g.Epoch != "e1" {
		t.Fatalf("decoded %+v, want %+v", g, want)
	}
	if err := st.StartEpoch(ctx, 1, "e2"); err != nil {
		t.Fatal(err)
	}
	if n, _ := st.Len(ctx); n != 0 {
		t.Fatalf("a new epoch kept %d old entries", n)
	}
}

// TestMutationsAreFencedByTerm: once a newer sequencer term touched Redis,
// a deposed sequencer can neither publish nor start an epoch (which would
// wipe its successor's stream); starting the current epoch again is a no-op.
func TestMutationsAreFencedByTerm(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	st := stream.New(rdb, "c", 1000)
	if err := st.StartEpoch(ctx, 1, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := st.ClaimTerm(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := st.Publish(ctx, 2, "e1", 0, []stream.Entry{entry(1, "e1"), entry(2, "e1")}); err != nil {
		t.Fatal(err)
	}
	if err := st.StartEpoch(ctx, 1, "stale"); !errors.Is(err, stream.ErrFenced) {
		t.Fatalf("start epoch by term 1 after term 2: %v, want ErrFenced", err)
	}
	if err := st.Publish(ctx, 1, "e1", 2, []stream.Entry{entry(3, "e1")}); !errors.Is(err, stream.ErrFenced) {
		t.Fatalf("publish by term 1 after term 2: %v, want ErrFenced", err)
	}
	if err := st.ClaimTerm(ctx, 1); !errors.Is(err, stream.ErrFenced) {
		t.Fatalf("claim term 1 after term 2: %v, want ErrFenced", err)
	}
	// The current epoch again: nothing is wiped.
	if err := st.StartEpoch(ctx, 2, "e1"); err != nil {
		t.Fatal(err)
	}
	if tail, err := st.Tail(ctx); err != nil || tail != (canvas.Position{Epoch: "e1", Seq: 2}) {
		t.Fatalf("tail %s %v, want e1:2 untouched", tail, err)
	}
}
