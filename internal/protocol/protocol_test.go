package protocol_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/protocol"
)

// Every server frame decodes into ServerFrame with its fields intact, so a
// reader can decode first and switch on Type after.
func TestServerFrameDecodesEveryFrame(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 15, 4, 5, time.UTC)
	ev := protocol.Event{Seq: 3, ID: "x", Kind: protocol.KindCanary, GX: 1, GY: 2, Color: "#010203",
		Version: 9, CommittedAt: at, PublishedAt: at.Add(time.Second)}
	for _, tc := range []struct {
		frame any
		want  protocol.ServerFrame
	}{
		{protocol.Hello{Type: protocol.TypeHello, Epoch: "e", Seq: 2, Resumed: true},
			protocol.ServerFrame{Type: protocol.TypeHello, Epoch: "e", Seq: 2, Resumed: true}},
		{protocol.Resync{Type: protocol.TypeResync, Reason: protocol.ReasonSlow, Epoch: "e", Seq: 5},
			protocol.ServerFrame{Type: protocol.TypeResync, Reason: protocol.ReasonSlow, Epoch: "e", Seq: 5}},
		{protocol.Events{Type: protocol.TypeEvents, Events: []protocol.Event{ev}},
			protocol.ServerFrame{Type: protocol.TypeEvents, Events: []protocol.Event{ev}}},
	} {
		b, err := json.Marshal(tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		var got protocol.ServerFrame
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got.Type != tc.want.Type || got.Epoch != tc.want.Epoch || got.Seq != tc.want.Seq ||
			got.Resumed != tc.want.Resumed || got.Reason != tc.want.Reason || len(got.Events) != len(tc.want.Events) {
			t.Fatalf("%s decoded to %+v, want %+v", b, got, tc.want)
		}
		for i := range got.Events {
			g, w := got.Events[i], tc.want.Events[i]
			if !g.CommittedAt.Equal(w.CommittedAt) || !g.PublishedAt.Equal(w.PublishedAt) {
				t.Fatalf("event %d times %+v, want %+v", i, g, w)
			}
			g.CommittedAt, g.PublishedAt, w.CommittedAt, w.PublishedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
			if g != w {
				t.Fatalf("event %d %+v, want %+v", i, g, w)
			}
		}
	}
}
