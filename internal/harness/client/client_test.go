package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

const waitFor = 8 * time.Second

// fakeGateway plays scripted connections: the i-th connection runs
// script[i] (the last one repeats), and /api/canvas serves snapshot.
type fakeGateway struct {
	t        *testing.T
	srv      *httptest.Server
	script   []func(ws *websocket.Conn, since string)
	conns    atomic.Int32
	snapshot atomic.Value // string: the /api/canvas body
	snaps    atomic.Int32
	// gate, when set, holds /api/canvas: the handler says on asked that a
	// request came, then waits for gate to close before reading snapshot.
	gate  atomic.Pointer[chan struct{}]
	asked chan struct{}
	// queries gets each /ws request's query; regions, when set, answers
	// /api/canvas?regions= (its list is announced on regionAsks).
	queries    chan url.Values
	regions    atomic.Pointer[func(list string) string]
	regionAsks chan string
	// dialGate, when set, holds the next /ws request before its upgrade
	// (a slow handshake): announced on dialing, released by closing it.
	dialGate atomic.Pointer[chan struct{}]
	dialing  chan url.Values
}

func newFake(t *testing.T, script ...func(ws *websocket.Conn, since string)) *fakeGateway {
	f := &fakeGateway{t: t, script: script, asked: make(chan struct{}, 16), queries: make(chan url.Values, 16), regionAsks: make(chan string, 16), dialing: make(chan url.Values, 1)}
	f.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e1","seq":0},"pixels":[]}`)
	up := websocket.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if g := f.dialGate.Swap(nil); g != nil {
			f.dialing <- r.URL.Query()
			<-*g
		}
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		select {
		case f.queries <- r.URL.Query():
		default:
		}
		i := int(f.conns.Add(1)) - 1
		s := f.script[min(i, len(f.script)-1)]
		s(ws, r.URL.Query().Get("since"))
	})
	mux.HandleFunc("/api/canvas", func(w http.ResponseWriter, r *http.Request) {
		if g := f.gate.Load(); g != nil {
			f.asked <- struct{}{}
			select {
			case <-*g:
			case <-r.Context().Done():
				return
			}
		}
		f.snaps.Add(1)
		if fn := f.regions.Load(); fn != nil && r.URL.Query().Has("regions") {
			list := r.URL.Query().Get("regions")
			f.regionAsks <- list
			_, _ = w.Write([]byte((*fn)(list)))
			return
		}
		_, _ = w.Write([]byte(f.snapshot.Load().(string)))
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// send writes v as a JSON text frame.
func send(ws *websocket.Conn, v any) {
	b, _ := json.Marshal(v)
	_ = ws.WriteMessage(websocket.TextMessage, b)
}

// holdSnapshots makes /api/canvas wait until the returned function is
// called; until then each request is announced on f.asked.
func (f *fakeGateway) holdSnapshots() (release func()) {
	g := make(chan struct{})
	f.gate.Store(&g)
	return func() { f.gate.Store(nil); close(g) }
}

// waitAsked waits until the client asked for a snapshot.
func (f *fakeGateway) waitAsked() {
	select {
	case <-f.asked:
	case <-time.After(waitFor):
		f.t.Errorf("the client never asked for a snapshot")
	}
}

// hold keeps a scripted connection open until the client goes away.
func hold(ws *websocket.Conn) {
	for {
		if _, _, err := ws.ReadMessage(); err != nil {
			return
		}
	}
}

func hello(epoch string, seq uint64, resumed bool) map[string]any {
	return map[string]any{"type": "hello", "epoch": epoch, "seq": seq, "resumed": resumed}
}

type ev struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind,omitempty"`
	GX      int    `json:"gx"`
	GY      int    `json:"gy"`
	Color   string `json:"color"`
	Version int64  `json:"version"`
}

func events(evs ...ev) map[string]any {
	for i := range evs {
		if evs[i].Color == "" {
			evs[i].Color = "#112233"
		}
	}
	return map[string]any{"type": "events", "events": evs}
}

func run(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	o.Logger = gatewaytest.Logger()
	c := client.New(o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return c
}

// A sequence gap makes the client reconnect with since=<last contiguous>,
// and the replay fills the gap.
func TestClientReplaysGap(t *testing.T) {
	sinces := make(chan string, 4)
	f := newFake(t,
		func(ws *websocket.Conn, since string) {
			sinces <- since
			send(ws, hello("e1", 0, false))
			send(ws, events(ev{Seq: 1, GX: 1, Version: 1}, ev{Seq: 2, GX: 2, Version: 1}))
			send(ws, events(ev{Seq: 4, GX: 4, Version: 1}))
			hold(ws)
		},
		func(ws *websocket.Conn, since string) {
			sinces <- since
			send(ws, hello("e1", 4, true))
			send(ws, events(ev{Seq: 3, GX: 3, Version: 1}, ev{Seq: 4, GX: 4, Version: 1}))
			hold(ws)
		})
	c := run(t, client.Options{BaseURL: f.srv.URL})
	for i, want := range []string{"", "e1:2"} {
		select {
		case got := <-sinces:
			if got != want {
				t.Fatalf("connection %d since %q, want %q", i, got, want)
			}
		case <-time.After(waitFor):
			t.Fatalf("connection %d never came", i)
		}
	}
	// The first connection's snapshot loads beside the stream: wait for it
	// too (the position can reach 4 before it is in).
	gatewaytest.Eventually(t, waitFor, func() error {
		if p := c.Position(); p != (canvas.Position{Epoch: "e1", Seq: 4}) {
			return fmt.Errorf("position %v", p)
		}
		if st := c.Stats(); st.SnapshotPending {
			return fmt.Errorf("snapshot pending: %+v", st)
		}
		return nil
	})
	var seqs []uint64
	for _, r := range c.History() {
		if !r.Dup {
			seqs = append(seqs, r.Event.Seq)
		}
	}
	if fmt.Sprint(seqs) != "[1 2 3 4]" {
		t.Fatalf("history %v", seqs)
	}
	if st := c.Stats(); st.Gaps != 1 || st.Connects != 2 || st.Resumes != 1 || st.Snapshots != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(c.Canvas()) != 4 {
		t.Fatalf("canvas %v", c.Canvas())
	}
}

// Versions decide, not arrival order: an older version never overwrites a
// newer one, duplicates are flagged, canaries count for continuity only.
func TestClientAppliesByVersion(t *testing.T) {
	var got []client.Received
	var mu sync.Mutex
	frames := []any{
		hello("e1", 0, false),
		events(
			ev{Seq: 1, GX: 1, GY: 1, Color: "#0000FF", Version: 2},
			ev{Seq: 2, GX: 1, GY: 1, Color: "#FF0000", Version: 1},
			ev{Seq: 3, Kind: "canary"},
		),
		events(ev{Seq: 2, GX: 1, GY: 1, Color: "#FF0000", Version: 1}),
	}
	var wantBytes int64
	for _, fr := range frames {
		b, _ := json.Marshal(fr)
		wantBytes += int64(len(b)) // send writes json.Marshal's bytes
	}
	var f *fakeGateway
	f = newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, frames[0])
		f.waitAsked()
		for _, fr := range frames[1:] {
			send(ws, fr)
		}
		hold(ws)
	})
	f.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e1","seq":0},"pixels":[{"gx":1,"gy":1,"color":"#00FF00","version":1},{"gx":5,"gy":5,"color":"#ABCDEF","version":7}]}`)
	// The snapshot was read before the events were committed: they arrive
	// while it loads, and must stay applied on top of it.
	release := f.holdSnapshots()
	c := run(t, client.Options{BaseURL: f.srv.URL, OnEvent: func(r client.Received) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}})
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Received != 4 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	release()
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Snapshots != 1 || st.SnapshotPending {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	want := map[[2]int]client.CanvasPixel{
		{1, 1}: {Color: 0x0000FF, Version: 2},
		{5, 5}: {Color: 0xABCDEF, Version: 7},
	}
	if cv := c.Canvas(); fmt.Sprint(cv) != fmt.Sprint(want) {
		t.Fatalf("canvas %v, want %v", cv, want)
	}
	st := c.Stats()
	if st.Duplicates != 1 || st.Canaries != 1 || st.Gaps != 0 || c.Position().Seq != 3 || st.Frames != 3 || st.Bytes != wantBytes {
		t.Fatalf("stats %+v position %v (want 3 frames, %d bytes)", st, c.Position(), wantBytes)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 || !got[3].Dup || got[2].Event.Kind != canvas.KindCanary || got[0].Epoch != "e1" {
		t.Fatalf("hook saw %+v", got)
	}
}

// A resync replaces the canvas with the snapshot instead of merging by
// version: after the store restarted empty (DATA_DIR=memory) versions start
// over at 1, and a client that kept its higher-numbered pixels would never
// converge. Here it held (1,1) at v3 and (2,2); the new history has (1,1) at
// v1 and no (2,2).
func TestClientResyncReplacesCanvas(t *testing.T) {
	next := make(chan struct{})
	f := newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, hello("e1", 0, false))
		send(ws, events(
			ev{Seq: 1, GX: 1, GY: 1, Color: "#AAAAAA", Version: 3},
			ev{Seq: 2, GX: 2, GY: 2, Color: "#BBBBBB", Version: 1},
		))
		<-next
		send(ws, map[string]any{"type": "resync", "reason": "epoch", "epoch": "e2", "seq": 0})
		hold(ws)
	})
	c := run(t, client.Options{BaseURL: f.srv.URL})
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Received != 2 || st.Snapshots != 1 || st.SnapshotPending || len(c.Canvas()) != 2 {
			return fmt.Errorf("stats %+v canvas %v", st, c.Canvas())
		}
		return nil
	})
	f.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e2","seq":0},"pixels":[{"gx":1,"gy":1,"color":"#444444","version":1}]}`)
	close(next)
	want := map[[2]int]client.CanvasPixel{{1, 1}: {Color: 0x444444, Version: 1}}
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Snapshots != 2 || st.SnapshotPending {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if cv := c.Canvas(); fmt.Sprint(cv) != fmt.Sprint(want) {
		t.Fatalf("canvas after the resync %v, want exactly the snapshot %v", cv, want)
	}
}

// Events that arrive while the snapshot loads are applied on top of the
// snapshot that replaces the canvas, except those the snapshot's position
// says it holds: the snapshot (position e2:1) was read after seq 1 and
// before seq 2, so (1,1) ends at seq 2's colour, not the snapshot's.
func TestClientEventsDuringSnapshotStayApplied(t *testing.T) {
	var f *fakeGateway
	next := make(chan struct{})
	f = newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, hello("e1", 0, false))
		send(ws, events(ev{Seq: 1, GX: 2, GY: 2, Color: "#BBBBBB", Version: 9}))
		<-next
		send(ws, map[string]any{"type": "resync", "reason": "epoch", "epoch": "e2", "seq": 0})
		f.waitAsked()
		send(ws, events(
			ev{Seq: 1, GX: 3, GY: 3, Color: "#CCCCCC", Version: 1},
			ev{Seq: 2, GX: 1, GY: 1, Color: "#DDDDDD", Version: 2},
		))
		hold(ws)
	})
	c := run(t, client.Options{BaseURL: f.srv.URL})
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Received != 1 || st.Snapshots != 1 || st.SnapshotPending {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	f.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e2","seq":1},"pixels":[{"gx":3,"gy":3,"color":"#CCCCCC","version":1},{"gx":1,"gy":1,"color":"#444444","version":1}]}`)
	release := f.holdSnapshots()
	close(next)
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Received != 3 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	release()
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Snapshots != 2 || st.SnapshotPending {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	want := map[[2]int]client.CanvasPixel{{1, 1}: {Color: 0xDDDDDD, Version: 2}, {3, 3}: {Color: 0xCCCCCC, Version: 1}}
	if cv := c.Canvas(); fmt.Sprint(cv) != fmt.Sprint(want) {
		t.Fatalf("canvas %v, want %v", cv, want)
	}
}

// A resync moves the position and reloads the snapshot on the same
// connection.
func TestClientResyncReloadsSnapshot(t *testing.T) {
	next := make(chan struct{})
	f := newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, hello("e1", 5, false))
		<-next
		send(ws, map[string]any{"type": "resync", "reason": "slow", "epoch": "e2", "seq": 9})
		send(ws, events(ev{Seq: 10, GX: 3, Version: 4}))
		hold(ws)
	})
	c := run(t, client.Options{BaseURL: f.srv.URL})
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Snapshots != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	f.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e2","seq":9},"pixels":[{"gx":7,"gy":7,"color":"#010203","version":3}]}`)
	close(next)
	gatewaytest.Eventually(t, waitFor, func() error {
		st := c.Stats()
		if st.Snapshots != 2 || st.Resyncs != 1 || st.SnapshotPending || c.Position() != (canvas.Position{Epoch: "e2", Seq: 10}) || len(c.Canvas()) != 2 {
			return fmt.Errorf("stats %+v position %v canvas %v", st, c.Position(), c.Canvas())
		}
		return nil
	})
	if st := c.Stats(); st.Connects != 1 {
		t.Fatalf("resync reconnected: %+v", st)
	}
}

// A snapshot that fails is retried until it loads.
func TestClientRetriesSnapshot(t *testing.T) {
	var calls atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/api/canvas", func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, `{"error":{"code":"unavailable","message":"down"}}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"width":8,"height":8,"position":{"epoch":"e1","seq":0},"pixels":[{"gx":0,"gy":0,"color":"#FFFFFF","version":1}]}`))
	})
	snaps := httptest.NewServer(mux)
	t.Cleanup(snaps.Close)
	f := newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, hello("e1", 0, false))
		hold(ws)
	})
	c := run(t, client.Options{BaseURL: f.srv.URL, SnapshotURL: snaps.URL})
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.Snapshots != 1 || st.SnapshotPending || len(c.Canvas()) != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d snapshot calls, want 3", n)
	}
}

func TestClientRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:80", "ftp://127.0.0.1/"} {
		if err := client.New(client.Options{BaseURL: u}).Run(context.Background()); err == nil {
			t.Errorf("base URL %q accepted", u)
		}
	}
}

// Against a real gateway, in each encoding (compact JSON, JSON with every
// optional field, binary): drops resume without loss, a pause stalls only
// this client, pings measure the round trip, and events carry the
// optional fields exactly when asked for.
func TestClientWithRealGateway(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   client.Options
		fields bool
	}{
		{"json", client.Options{}, false},
		{"json with fields", client.Options{Fields: []string{protocol.FieldID, protocol.FieldCommittedAt, protocol.FieldPublishedAt}}, true},
		{"binary", client.Options{Binary: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.MustStart(t, false)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
			t.Cleanup(func() { _ = rdb.Close() })
			pub := gatewaytest.NewPublisher(t, rdb, "t")
			pub.StartEpoch("e1")
			pub.Publish(20)
			gw := gatewaytest.Start(t, gateway.Options{Redis: rdb, Canvas: "t", InstanceID: "a"}, pub)
			gw.WaitReady(t, "e1")
			o := tc.opts
			o.BaseURL = gw.URL
			c := run(t, o)
			converged := func() error {
				if p := c.Position(); p != pub.Position() {
					return fmt.Errorf("position %v, want %v", p, pub.Position())
				}
				if st := c.Stats(); st.SnapshotPending {
					return fmt.Errorf("snapshot pending: %+v", st)
				}
				want, got := pub.Pixels(), c.Canvas()
				if len(got) != len(want) {
					return fmt.Errorf("canvas %d pixels, want %d", len(got), len(want))
				}
				for k, w := range want {
					if got[k] != (client.CanvasPixel{Color: w.Color, Version: w.Version}) {
						return fmt.Errorf("pixel %v: %v, want %v", k, got[k], w)
					}
				}
				return nil
			}
			gatewaytest.Eventually(t, waitFor, converged)
			for range 5 {
				c.Drop()
				pub.Publish(30)
			}
			c.Pause(true)
			pub.Publish(30)
			c.Pause(false)
			gatewaytest.Eventually(t, waitFor, converged)
			if err := c.Ping(); err != nil {
				t.Fatal(err)
			}
			gatewaytest.Eventually(t, waitFor, func() error {
				if c.Stats().LastRTT <= 0 {
					return fmt.Errorf("no pong yet")
				}
				return nil
			})
			st := c.Stats()
			if st.Resyncs != 0 || st.Gaps != 0 || st.Connects < 2 || st.Snapshots != 1 {
				t.Fatalf("stats %+v", st)
			}
			h := c.History()
			if len(h) == 0 {
				t.Fatal("no events in the history")
			}
			for _, r := range h {
				has := r.Event.ID != "" && !r.Event.CommittedAt.IsZero() && !r.PublishedAt.IsZero()
				none := r.Event.ID == "" && r.Event.CommittedAt.IsZero() && r.PublishedAt.IsZero()
				if tc.fields && !has || !tc.fields && !none {
					t.Fatalf("event %+v: id, committedAt and publishedAt should be there only when asked for", r)
				}
			}
		})
	}
}

// Fields need JSON: asking for them on the binary protocol is refused
// before anything connects.
func TestClientRefusesFieldsWithBinary(t *testing.T) {
	c := client.New(client.Options{BaseURL: "http://127.0.0.1:1", Binary: true, Fields: []string{protocol.FieldID}})
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("Run accepted Fields with Binary")
	}
}

// When its gateway dies the client resumes on an alternate, from the
// position it had; every snapshot it loads is reported to OnSnapshot.
func TestClientFailsOverToAlternate(t *testing.T) {
	first := newFake(t, func(ws *websocket.Conn, _ string) {
		send(ws, hello("e1", 0, false))
		send(ws, events(ev{Seq: 1, GX: 1, Version: 1}))
		// then the gateway dies: the connection closes without a word
	})
	var since atomic.Value
	second := newFake(t, func(ws *websocket.Conn, s string) {
		since.Store(s)
		send(ws, hello("e1", 1, true))
		send(ws, events(ev{Seq: 2, GX: 2, Version: 1}))
		hold(ws)
	})
	var snaps atomic.Int32
	c := run(t, client.Options{BaseURL: first.srv.URL, Alternates: []string{second.srv.URL}, SnapshotURL: first.srv.URL,
		OnSnapshot: func(map[[2]int]client.CanvasPixel) { snaps.Add(1) }})
	gatewaytest.Eventually(t, waitFor, func() error {
		if c.Position() != (canvas.Position{Epoch: "e1", Seq: 2}) || second.conns.Load() == 0 {
			return fmt.Errorf("position %v, connections to the alternate %d", c.Position(), second.conns.Load())
		}
		return nil
	})
	if s, _ := since.Load().(string); s != "e1:1" {
		t.Errorf("resumed on the alternate with since=%q, want e1:1", s)
	}
	if st := c.Stats(); st.Resumes == 0 || snaps.Load() != int32(st.Snapshots) || st.Snapshots == 0 {
		t.Errorf("stats %+v, OnSnapshot calls %d", st, snaps.Load())
	}
}
