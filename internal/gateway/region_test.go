package gateway_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// regionReader follows a region connection as docs/protocol.md says a
// client must: every events frame's from at most one past the position,
// sequences increasing; it fails the test on a hole.
type regionReader struct {
	t    *testing.T
	ws   *websocket.Conn
	last uint64
	got  []protocol.Event // pixel events, in order
	acks []protocol.ServerFrame
}

// until reads frames until the position reaches seq.
func (r *regionReader) until(seq uint64) {
	r.t.Helper()
	for r.last < seq {
		f := readFrame(r.t, r.ws)
		switch f.Type {
		case protocol.TypeSubscribed:
			r.acks = append(r.acks, f)
		case protocol.TypeEvents:
			if f.From == 0 || f.From > r.last+1 {
				r.t.Fatalf("frame from %d with position %d: a hole (%+v)", f.From, r.last, f)
			}
			for _, e := range f.Events {
				if e.Seq <= r.last {
					r.t.Fatalf("seq %d after %d", e.Seq, r.last)
				}
				r.last = e.Seq
				if e.Kind == "" {
					r.got = append(r.got, e)
				}
			}
		default:
			r.t.Fatalf("unexpected frame %+v", f)
		}
	}
}

func (r *regionReader) send(v any) {
	r.t.Helper()
	b, _ := json.Marshal(v)
	if err := r.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		r.t.Fatal(err)
	}
}

// regionsOf lists the regions of the events.
func regionsOf(evs []protocol.Event) []canvas.Region {
	var out []canvas.Region
	for _, e := range evs {
		out = append(out, canvas.RegionOf(e.GX, e.GY))
	}
	return out
}

// A connection given regions receives exactly the events inside them and
// every canary, in frames whose from shows nothing inside them was
// skipped; a subscribe adds regions from the acknowledged position on,
// an unsubscribe removes them, and subscribing to all returns to the
// whole canvas. Others on the same gateway are unaffected.
func TestRegionsFilterWhatAConnectionReceives(t *testing.T) {
	f := newProto(t, 0, nil)
	whole, _, err := rawDial(t, f.gw.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	readFrame(t, whole)
	ws, _, err := rawDial(t, f.gw.URL, "?regions=0,65", nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := readFrame(t, ws); h.Type != protocol.TypeHello {
		t.Fatalf("first frame %+v", h)
	}
	r := &regionReader{t: t, ws: ws}
	gatewaytest.Eventually(t, waitFor, func() error {
		s := f.gw.G.Stats()
		if s.Clients != 2 || s.RegionClients != 1 || s.Subscriptions != 2 || len(s.TopRegions) != 2 || s.TopRegions[0].Region != 0 {
			return fmt.Errorf("stats %d clients, %d by region, %d held, top %v; want 2, 1, 2, [0 65]", s.Clients, s.RegionClients, s.Subscriptions, s.TopRegions)
		}
		return nil
	})

	// Regions 0 (0..63, 0..63), 1 (64.., 0..), 65 (64.., 64..), 64 (0.., 64..).
	pts := [][2]int{{1, 1}, {70, 5}, {70, 70}, {5, 70}, {63, 63}, {64, 64}, {200, 200}}
	f.pub.PublishAt(pts...)
	canary := f.pub.PublishCanary()
	r.until(canary.Seq)
	if got, want := regionsOf(r.got), []canvas.Region{0, 65, 0, 65}; !slices.Equal(got, want) {
		t.Fatalf("regions 0,65 received events of regions %v, want %v", got, want)
	}

	// Subscribe to region 1, drop 0.
	r.send(protocol.Subscribe{Type: protocol.TypeSubscribe, Regions: []canvas.Region{1}})
	r.send(protocol.Subscribe{Type: protocol.TypeUnsubscribe, Regions: []canvas.Region{0}})
	for len(r.acks) < 2 {
		f := readFrame(t, ws)
		if f.Type != protocol.TypeSubscribed {
			t.Fatalf("got %+v before the acknowledgements", f)
		}
		r.acks = append(r.acks, f)
	}
	if a := r.acks[1]; a.All || !slices.Equal(a.Regions, []canvas.Region{1, 65}) || a.Epoch != "e1" || a.Seq != canary.Seq {
		t.Fatalf("acknowledgement %+v, want regions [1 65] at e1:%d", a, canary.Seq)
	}
	r.got = nil
	f.pub.PublishAt(pts...)
	canary = f.pub.PublishCanary()
	r.until(canary.Seq)
	if got, want := regionsOf(r.got), []canvas.Region{1, 65, 65}; !slices.Equal(got, want) {
		t.Fatalf("regions 1,65 received events of regions %v, want %v", got, want)
	}

	// Back to the whole canvas.
	r.send(protocol.Subscribe{Type: protocol.TypeSubscribe, All: true})
	r.acks, r.got = nil, nil
	for len(r.acks) == 0 {
		r.acks = append(r.acks, readFrame(t, ws))
	}
	if a := r.acks[0]; a.Type != protocol.TypeSubscribed || !a.All || len(a.Regions) != 0 {
		t.Fatalf("acknowledgement %+v, want all", a)
	}
	evs := f.pub.PublishAt(pts...)
	r.until(evs[len(evs)-1].Seq)
	if len(r.got) != len(pts) {
		t.Fatalf("whole canvas again: %d events, want %d", len(r.got), len(pts))
	}
	if got := readEvents(t, whole, evs[len(evs)-1].Seq); !slices.Equal(got, seqRange(1, evs[len(evs)-1].Seq)) {
		t.Fatalf("the whole-canvas bystander got %v", got)
	}
}

// Resuming with regions replays only the gap's events inside them, and
// the frames' from covers the whole gap: no hole is seen, none is hidden.
func TestResumeWithRegionsReplaysThem(t *testing.T) {
	f := newProto(t, 0, nil)
	var pts [][2]int
	for i := range 40 {
		pts = append(pts, [2]int{(i * 37) % 256, (i * 53) % 256})
	}
	evs := f.pub.PublishAt(pts...)
	end := evs[len(evs)-1].Seq
	gatewaytest.Eventually(t, waitFor, func() error {
		if got := f.gw.G.Stats().LastSeq; got != end {
			return fmt.Errorf("gateway at %d, want %d", got, end)
		}
		return nil
	})
	ws, _, err := rawDial(t, f.gw.URL, fmt.Sprintf("?since=e1:5&regions=%d,%d", canvas.RegionOf(pts[7][0], pts[7][1]), canvas.RegionOf(pts[20][0], pts[20][1])), nil)
	if err != nil {
		t.Fatal(err)
	}
	if h := readFrame(t, ws); !h.Resumed || h.Seq != end {
		t.Fatalf("hello %+v, want resumed at %d", h, end)
	}
	r := &regionReader{t: t, ws: ws, last: 5}
	canary := f.pub.PublishCanary()
	r.until(canary.Seq)
	want := 0
	held := map[canvas.Region]bool{canvas.RegionOf(pts[7][0], pts[7][1]): true, canvas.RegionOf(pts[20][0], pts[20][1]): true}
	for _, e := range evs[5:] {
		if held[canvas.RegionOf(e.GX, e.GY)] {
			want++
		}
	}
	if len(r.got) != want {
		t.Fatalf("replayed %d events inside the regions, want %d", len(r.got), want)
	}
	for _, e := range r.got {
		if !held[canvas.RegionOf(e.GX, e.GY)] {
			t.Fatalf("replayed %+v, outside the regions", e)
		}
	}
}
