package gateway_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The consumer's continuity rules, fed entries directly: a gap is filled
// from the stream before the entry that revealed it; entries at or below
// the position are counted as duplicates and not broadcast; a gap the
// stream no longer holds resyncs clients past it; another epoch resyncs
// them to its start.
func TestConsumerContinuity(t *testing.T) {
	_, rdb, pub := newRig(t, false)
	pub.Publish(30)
	ctx := context.Background()
	key := stream.KeysFor("t").Stream
	msgs := func(from, to uint64) []redis.XMessage {
		t.Helper()
		m, err := rdb.XRange(ctx, key, stream.ID(from), stream.ID(to)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if err := rdb.XGroupCreate(ctx, key, stream.GroupName("a"), "$").Err(); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(opts(rdb, "a")) // never Run: the test plays the consumer loop
	if err != nil {
		t.Fatal(err)
	}
	g.SetPosition("e1", 10)
	hs := httptest.NewServer(g)
	t.Cleanup(hs.Close)
	t.Cleanup(g.Close)
	ws, _, err := rawDial(t, hs.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := readFrame(t, ws); h.Seq != 10 || h.Epoch != "e1" {
		t.Fatalf("hello %+v", h)
	}

	// 15..20 arrive while the position is 10: 11..14 are filled first.
	if err := g.Process(ctx, msgs(15, 20)); err != nil {
		t.Fatal(err)
	}
	if got := readEvents(t, ws, 20); !slices.Equal(got, seqRange(11, 20)) {
		t.Fatalf("got %v, want 11..20", got)
	}
	// Duplicates: counted, not broadcast.
	if err := g.Process(ctx, msgs(5, 8)); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.Duplicates != 4 || st.LastSeq != 20 || st.Broadcast != 10 {
		t.Fatalf("stats %+v, want 4 duplicates at 20 after 10 broadcast", st)
	}
	// 29..30 after 21..28 were trimmed away: resync past the hole.
	tail := msgs(29, 30)
	if err := rdb.XTrimMinID(ctx, key, stream.ID(29)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := g.Process(ctx, tail); err != nil {
		t.Fatal(err)
	}
	if r := readFrame(t, ws); r.Type != "resync" || r.Reason != protocol.ReasonGap || r.Seq != 28 || r.Epoch != "e1" {
		t.Fatalf("frame %+v, want resync gap at e1:28", r)
	}
	if got := readEvents(t, ws, 30); !slices.Equal(got, seqRange(29, 30)) {
		t.Fatalf("got %v, want 29..30", got)
	}
	// A new epoch under the group: resync to its start, then its entries.
	pub.StartEpoch("e2") // deletes the stream and its groups
	pub.Publish(3)
	if err := rdb.XGroupCreate(ctx, key, stream.GroupName("a"), "$").Err(); err != nil {
		t.Fatal(err)
	}
	if err := g.Process(ctx, msgs(1, 3)); err != nil {
		t.Fatal(err)
	}
	if r := readFrame(t, ws); r.Type != "resync" || r.Reason != protocol.ReasonEpoch || r.Seq != 0 || r.Epoch != "e2" {
		t.Fatalf("frame %+v, want resync epoch at e2:0", r)
	}
	if got := readEvents(t, ws, 3); !slices.Equal(got, seqRange(1, 3)) {
		t.Fatalf("got %v, want 1..3", got)
	}
}
