package gateway

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The bytes the gateway puts on the wire, pinned: clients in other
// languages parse them, so a refactoring must not change a byte.
func TestWireBytes(t *testing.T) {
	committed := time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.FixedZone("x", 3600))
	published := time.Date(2026, 11, 23, 9, 15, 4, 125000000, time.UTC)
	pixel := stream.Entry{Event: canvas.Event{ID: "65f1", Kind: canvas.KindPixel, GX: 10, GY: 20,
		Color: 0xFF8800, Version: 3, CommittedAt: committed, Epoch: "k3", Seq: 1843}, PublishedAt: published}
	canary := stream.Entry{Event: canvas.Event{ID: "65f2", Kind: canvas.KindCanary,
		CommittedAt: committed, Epoch: "k3", Seq: 1844}}
	unixZero := pixel
	unixZero.PublishedAt = time.Unix(0, 0)
	noID := pixel
	noID.ID = ""
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"pixel", encodeEvent(pixel),
			`{"seq":1843,"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z","publishedAt":"2026-11-23T09:15:04.125Z"}`},
		{"canary", encodeEvent(canary),
			`{"seq":1844,"id":"65f2","kind":"canary","gx":0,"gy":0,"color":"#000000","version":0,"committedAt":"2026-11-23T09:15:04.123456789Z"}`},
		{"published at the epoch", encodeEvent(unixZero),
			`{"seq":1843,"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z"}`},
		{"no id", encodeEvent(noID),
			`{"seq":1843,"gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z","publishedAt":"2026-11-23T09:15:04.125Z"}`},
		{"events", appendEventsFrame(nil, [][]byte{[]byte(`{"seq":1}`), []byte(`{"seq":2}`)}),
			`{"type":"events","events":[{"seq":1},{"seq":2}]}`},
		{"hello", encodeHello(canvas.Position{Epoch: "k3", Seq: 1842}, true),
			`{"type":"hello","epoch":"k3","seq":1842,"resumed":true}`},
		{"hello before contact", encodeHello(canvas.Position{}, false),
			`{"type":"hello","epoch":"","seq":0,"resumed":false}`},
		{"resync", encodeResync(protocol.ReasonSlow, canvas.Position{Epoch: "k3", Seq: 2050}),
			`{"type":"resync","reason":"slow","epoch":"k3","seq":2050}`},
		{"pong", pongFrame, `{"type":"pong"}`},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
}

// An events frame assembled from pre-encoded events is exactly what
// encoding protocol.Events would give, so the shortcut is not a dialect.
func TestEventsFrameIsProtocolEvents(t *testing.T) {
	committed := time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.UTC)
	entries := []stream.Entry{
		{Event: canvas.Event{ID: "a", Kind: canvas.KindPixel, GX: 1, GY: 2, Color: 0x010203, Version: 4,
			CommittedAt: committed, Seq: 7}, PublishedAt: committed.Add(time.Millisecond)},
		{Event: canvas.Event{ID: "b", Kind: canvas.KindCanary, CommittedAt: committed, Seq: 8}},
	}
	var encoded [][]byte
	frame := protocol.Events{Type: protocol.TypeEvents}
	for _, e := range entries {
		b := encodeEvent(e)
		encoded = append(encoded, b)
		var ev protocol.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		frame.Events = append(frame.Events, ev)
	}
	want, err := json.Marshal(frame)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendEventsFrame(nil, encoded); string(got) != string(want) {
		t.Fatalf("assembled %s\n encoded %s", got, want)
	}
}
