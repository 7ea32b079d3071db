package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// numbered makes entries from, from+1, … (n of them) of epoch e1, as a
// relay numbers them before its XADD.
func numbered(from uint64, n int) []stream.Entry {
	out := make([]stream.Entry, n)
	now := time.Now()
	for i := range out {
		seq := from + uint64(i)
		out[i] = stream.Entry{Event: canvas.Event{ID: fmt.Sprintf("off%d", seq), Kind: canvas.KindPixel,
			GX: int(seq % 64), GY: 63, Color: canvas.Color(seq), Version: 1, CommittedAt: now,
			Epoch: "e1", Seq: seq}, PublishedAt: now}
	}
	return out
}

// appendNumbered is the relay's XADD of entries (after the publisher's
// last entry or earlier appended ones), under the publisher's term.
func appendNumbered(f protoFixture, entries []stream.Entry) error {
	st := stream.New(f.rdb, "t", 100000)
	return st.Publish(context.Background(), 1, "e1", entries[0].Seq-1, entries)
}

// TestOfferReachesClientsBeforeTheStream: entries a relay in the same
// process offers reach clients before the stream holds them, and the
// gateway's read of the same entries later delivers nothing twice.
func TestOfferReachesClientsBeforeTheStream(t *testing.T) {
	f := newProto(t, 5, nil)
	ws, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := readFrame(t, ws); h.Type != "hello" || h.Seq != 5 {
		t.Fatalf("hello %+v, want e1:5", h)
	}
	ents := numbered(6, 3)
	f.gw.G.Offer(ents)
	if got := readEvents(t, ws, 8); !slices.Equal(got, seqRange(6, 8)) {
		t.Fatalf("offered 6..8, the client got %v", got)
	}
	if st := f.gw.G.Stats(); st.Offered != 3 || st.LastSeq != 8 {
		t.Fatalf("offered %d, at %d; want 3 offered, at 8", st.Offered, st.LastSeq)
	}
	if err := appendNumbered(f, ents); err != nil { // the XADD lands
		t.Fatal(err)
	}
	if err := appendNumbered(f, numbered(9, 1)); err != nil {
		t.Fatal(err)
	}
	if got := readEvents(t, ws, 9); !slices.Equal(got, []uint64{9}) {
		t.Fatalf("after the stream caught up the client got %v, want [9] alone", got)
	}
	if st := f.gw.G.Stats(); st.Offered != 3 || st.Broadcast != 9 {
		t.Fatalf("offered %d, broadcast %d; want 3 and 9", st.Offered, st.Broadcast)
	}
}

// TestOfferThatDoesNotContinueIsDropped: the hub takes an offer only where
// it continues its position exactly; the rest waits for the stream read.
func TestOfferThatDoesNotContinueIsDropped(t *testing.T) {
	f := newProto(t, 5, nil)
	ws, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, ws) // hello
	other := numbered(6, 1)
	other[0].Epoch = "e0"
	for name, ents := range map[string][]stream.Entry{
		"a gap":         numbered(7, 2),
		"another epoch": other,
		"already had":   numbered(3, 3),
	} {
		f.gw.G.Offer(ents)
		if st := f.gw.G.Stats(); st.Offered != 0 || st.LastSeq != 5 {
			t.Fatalf("%s: offered %d, at %d; want nothing taken, at 5", name, st.Offered, st.LastSeq)
		}
	}
	if err := appendNumbered(f, numbered(6, 1)); err != nil {
		t.Fatal(err)
	}
	if got := readEvents(t, ws, 6); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("the client got %v, want [6] from the stream", got)
	}
}

// TestResumeWaitsForOfferedEntries: a client resuming while the hub is
// ahead of the stream (entries offered, their XADD in flight) gets its
// gap replayed once the XADD lands, not a resync for a "trimmed" stream.
// Both ways in: a gap that starts in the stream (replay's next page) and
// one that starts past it (the first page).
func TestResumeWaitsForOfferedEntries(t *testing.T) {
	f := newProto(t, 5, nil)
	ents := numbered(6, 3)
	f.gw.G.Offer(ents)
	if st := f.gw.G.Stats(); st.LastSeq != 8 {
		t.Fatalf("at %d after the offer, want 8", st.LastSeq)
	}
	since := []uint64{4, 5}
	conns := make(chan []uint64, len(since))
	for _, s := range since {
		go func() {
			ws, _, err := rawDial(t, f.gw.URL, fmt.Sprintf("?since=e1:%d", s), nil)
			if err != nil {
				t.Error(err)
				conns <- nil
				return
			}
			var seqs []uint64
			for len(seqs) == 0 || seqs[len(seqs)-1] < 8 {
				fr := readFrameOrError(ws)
				switch {
				case fr.Type == "hello" && fr.Resumed && fr.Seq == 8:
				case fr.Type == protocol.TypeEvents:
					for _, e := range fr.Events {
						seqs = append(seqs, e.Seq)
					}
				default:
					t.Errorf("since e1:%d: frame %+v, want a resumed hello at 8 and events", s, fr)
					conns <- nil
					return
				}
			}
			conns <- seqs
		}()
	}
	time.Sleep(200 * time.Millisecond) // the resumes wait for the XADD
	if err := appendNumbered(f, ents); err != nil {
		t.Fatal(err)
	}
	for range since {
		got := <-conns
		if got == nil {
			t.FailNow()
		}
		if want4, want5 := seqRange(5, 8), seqRange(6, 8); !slices.Equal(got, want4) && !slices.Equal(got, want5) {
			t.Fatalf("replayed %v, want 5..8 or 6..8", got)
		}
	}
}

// readFrameOrError reads one frame; a failed read is a frame of type
// "error: …", so a goroutine can report it.
func readFrameOrError(ws interface {
	SetReadDeadline(time.Time) error
	ReadJSON(any) error
}) protocol.ServerFrame {
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	var f protocol.ServerFrame
	if err := ws.ReadJSON(&f); err != nil {
		f.Type = "error: " + err.Error()
	}
	return f
}

// TestReadsGatherWhileOffersKeepUp: while every entry the gateway reads was
// already offered, its read of the stream is only the record, and it waits
// offeredReadPause between reads instead of one XREADGROUP (and XACK) per
// entry: 50 entries offered and appended 2 ms apart take a handful of
// reads, not 50.
func TestReadsGatherWhileOffersKeepUp(t *testing.T) {
	f := newProto(t, 5, nil)
	ctx := context.Background()
	reads := func() int {
		t.Helper()
		info, err := f.rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_xreadgroup:calls="); ok {
				n, err := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		return 0
	}
	before := reads()
	for seq := uint64(6); seq < 56; seq++ {
		ents := numbered(seq, 1)
		f.gw.G.Offer(ents)
		if err := appendNumbered(f, ents); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if p, err := f.rdb.XPending(ctx, stream.KeysFor("t").Stream, stream.GroupName("a")).Result(); err != nil || p.Count > 0 {
			return fmt.Errorf("entries still pending (%v)", err)
		}
		return nil
	})
	if st := f.gw.G.Stats(); st.Offered != 50 || st.LastSeq != 55 {
		t.Fatalf("offered %d, at %d; want 50, at 55", st.Offered, st.LastSeq)
	}
	if n := reads() - before; n > 25 {
		t.Fatalf("%d stream reads for 50 offered entries, want them gathered (at most 25)", n)
	}
}
