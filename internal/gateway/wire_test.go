package gateway

import (
	"encoding/hex"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// encodeOne is one entry in format f, as a batch encodes it.
func encodeOne(f wireFormat, e stream.Entry) []byte {
	w := toWire(e)
	return appendEvent(nil, f, &w)
}

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
	odd := pixel
	odd.ID = `a"b`
	all := withID | withCommittedAt | withPublishedAt
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"pixel", encodeOne(0, pixel), `{"seq":1843,"gx":10,"gy":20,"color":"#FF8800","version":3}`},
		{"canary", encodeOne(0, canary), `{"seq":1844,"kind":"canary"}`},
		{"pixel, all fields", encodeOne(all, pixel),
			`{"seq":1843,"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z","publishedAt":"2026-11-23T09:15:04.125Z"}`},
		{"pixel, id", encodeOne(withID, pixel), `{"seq":1843,"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3}`},
		{"pixel, committedAt", encodeOne(withCommittedAt, pixel),
			`{"seq":1843,"gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z"}`},
		{"pixel, publishedAt", encodeOne(withPublishedAt, pixel),
			`{"seq":1843,"gx":10,"gy":20,"color":"#FF8800","version":3,"publishedAt":"2026-11-23T09:15:04.125Z"}`},
		{"canary, all fields", encodeOne(all, canary),
			`{"seq":1844,"id":"65f2","kind":"canary","committedAt":"2026-11-23T09:15:04.123456789Z"}`},
		{"published at the epoch", encodeOne(all, unixZero),
			`{"seq":1843,"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z"}`},
		{"no id", encodeOne(all, noID),
			`{"seq":1843,"gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T09:15:04.123456789Z","publishedAt":"2026-11-23T09:15:04.125Z"}`},
		{"an id that needs escaping", encodeOne(withID, odd), `{"seq":1843,"id":"a\"b","gx":10,"gy":20,"color":"#FF8800","version":3}`},
		{"events", appendEventsFrame(nil, [][]byte{[]byte(`{"seq":1}`), []byte(`{"seq":2}`)}),
			`{"type":"events","events":[{"seq":1},{"seq":2}]}`},
		{"hello", encodeHello(0, canvas.Position{Epoch: "k3", Seq: 1842}, true),
			`{"type":"hello","epoch":"k3","seq":1842,"resumed":true}`},
		{"hello before contact", encodeHello(0, canvas.Position{}, false),
			`{"type":"hello","epoch":"","seq":0,"resumed":false}`},
		{"resync", encodeResync(0, protocol.ReasonSlow, canvas.Position{Epoch: "k3", Seq: 2050}),
			`{"type":"resync","reason":"slow","epoch":"k3","seq":2050}`},
		{"pong", pongFrame, `{"type":"pong"}`},
	} {
		if string(tc.got) != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, tc.got, tc.want)
		}
	}
	// Binary: the test vectors of docs/protocol.md, built the gateway's way.
	for _, tc := range []struct {
		name string
		got  []byte
		want string
	}{
		{"hello", encodeHello(binaryFormat, canvas.Position{Epoch: "k3v9q2", Seq: 1842}, false), "0100b20e066b3376397132"},
		{"resync", encodeResync(binaryFormat, protocol.ReasonSlow, canvas.Position{Epoch: "k3v9q2", Seq: 2050}), "038210066b337639713204736c6f77"},
		{"one pixel", appendEventsPayload(nil, binaryFormat, 1843, [][]byte{encodeOne(binaryFormat, pixel)}), "02b30e1414ff880003"},
		{"pixel, canary", appendEventsPayload(nil, binaryFormat, 1843, [][]byte{encodeOne(binaryFormat, pixel), encodeOne(binaryFormat, canary)}), "02b30e1414ff88000301"},
		{"pong", pongWireBin, "820104"},
	} {
		if hex.EncodeToString(tc.got) != tc.want {
			t.Errorf("binary %s:\n got %x\nwant %s", tc.name, tc.got, tc.want)
		}
	}
}

// An events frame assembled from pre-encoded events decodes exactly as
// protocol.Events does, whatever the fields asked for: the shortcut is
// not a dialect.
func TestEventsFrameIsProtocolEvents(t *testing.T) {
	committed := time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.UTC)
	entries := []stream.Entry{
		{Event: canvas.Event{ID: "a", Kind: canvas.KindPixel, GX: 1, GY: 2, Color: 0x010203, Version: 4,
			CommittedAt: committed, Seq: 7}, PublishedAt: committed.Add(time.Millisecond)},
		{Event: canvas.Event{ID: "b", Kind: canvas.KindCanary, CommittedAt: committed, Seq: 8}},
	}
	for f := range binaryFormat {
		var encoded [][]byte
		want := protocol.Events{Type: protocol.TypeEvents}
		for _, e := range entries {
			encoded = append(encoded, encodeOne(f, e))
			ev := protocol.Event{Seq: e.Seq}
			if e.Kind == canvas.KindCanary {
				ev.Kind = protocol.KindCanary
			} else {
				ev.GX, ev.GY, ev.Color, ev.Version = e.GX, e.GY, e.Color.String(), e.Version
			}
			if f&withID != 0 {
				ev.ID = e.ID
			}
			if f&withCommittedAt != 0 {
				ev.CommittedAt = e.CommittedAt
			}
			if f&withPublishedAt != 0 {
				ev.PublishedAt = e.PublishedAt
			}
			want.Events = append(want.Events, ev)
		}
		var got protocol.Events
		frame := appendEventsFrame(nil, encoded)
		if err := json.Unmarshal(frame, &got); err != nil {
			t.Fatalf("format %d: %s: %v", f, frame, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("format %d: %s decodes to\n %+v\nwant %+v", f, frame, got, want)
		}
	}
}

// The wire budget of issue 31: a delivery at the steady workload (a lone
// event in its frame, on a 64×64 canvas, six-digit sequences and
// three-digit versions) costs at most 94 payload bytes as compact JSON —
// the Centrifuge peer's figure — and at most 24 as binary even alone; in a
// frame of many events a binary one costs at most 12. Sizes, not times:
// the encoder decides them.
func TestWireBudget(t *testing.T) {
	ev := func(seq uint64) stream.Entry {
		return stream.Entry{Event: canvas.Event{ID: "6b15e78e3e8c1a11c4058392", Kind: canvas.KindPixel, GX: 63, GY: 63,
			Color: 0xABCDEF, Version: 999, CommittedAt: time.Now(), Epoch: "e", Seq: seq}, PublishedAt: time.Now()}
	}
	lone := func(f wireFormat) int {
		e := ev(999999)
		return eventsPayloadLen(f, e.Seq, [][]byte{encodeOne(f, e)})
	}
	if n := lone(0); n > 94 {
		t.Errorf("compact JSON: %d bytes for a lone event, want ≤ 94", n)
	}
	if n := lone(binaryFormat); n > 24 {
		t.Errorf("binary: %d bytes for a lone event, want ≤ 24", n)
	}
	const many = 64
	evs := make([][]byte, many)
	for i := range evs {
		evs[i] = encodeOne(binaryFormat, ev(999999+uint64(i)))
	}
	if n := eventsPayloadLen(binaryFormat, 999999, evs); n > 12*many {
		t.Errorf("binary: %d bytes for %d coalesced events (%.1f each), want ≤ 12 each", n, many, float64(n)/many)
	}
	t.Logf("bytes per delivery, lone event: JSON with every field %d, compact JSON %d, binary %d; binary coalesced %.1f",
		lone(withID|withCommittedAt|withPublishedAt), lone(0), lone(binaryFormat), float64(eventsPayloadLen(binaryFormat, 999999, evs))/many)
}
