package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// TestServeOffersSurviveRedisFaults: in `serve` the relay hands each chunk
// to the gateway beside it before the XADD, so that gateway's clients hold
// events the stream does not have yet. Redis is paused (the XADD and the
// gateway's read stall with entries already delivered) and then killed and
// restarted from its AOF (the stream may come back short) while a writer
// keeps placing pixels: every client must lose nothing, receive nothing
// foreign and converge to the store, with the history checker judging.
func TestServeOffersSurviveRedisFaults(t *testing.T) {
	srv := redistest.MustStart(t, true)
	port, err := redisproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "HOST": "127.0.0.1", "PORT": strconv.Itoa(port),
		"REDIS_URL": srv.URL(), "RATE_LIMIT": "0", "INSTANCE_ID": "t-offer"}, "serve")
	base := "http://" + m.Addr
	target := cluster.Target{API: base, Gateways: []string{base}, Describe: "serve, embedded store"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec := history.NewRecorder(rand.Uint32())
	watchers, err := cluster.Watch(ctx, rec, target, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()

	// 200 writes a second for 5 s: Redis is paused for a second after
	// 150 of them are acknowledged and killed and restarted after 550.
	const total = 1000
	pw := startPacedWrites(ctx, base, rec, 16, 200, total, 1)
	w, done := pw.w, pw.done
	waitAcked := func(n int) { t.Helper(); pw.waitAcked(ctx, t, n) }
	waitAcked(150)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	waitAcked(550)
	if err := srv.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	// A slow machine may shed some writes (every worker busy when one is
	// due); every write sent must be acknowledged.
	if res := <-done; w.Acked() != res.Sent || res.Sent < total/2 {
		t.Fatalf("%d of %d writes sent were acknowledged (%d shed): Redis faults must not fail a write", w.Acked(), res.Sent, res.Shed)
	}
	rep := cluster.Verify(ctx, t.Name(), target, rec, watchers, 30*time.Second, t.Logf)
	if p := rep.Problems(); len(p) > 0 {
		t.Fatalf("the history checker found: %v", p)
	}
	if st := m.gateway.Stats(); st.Offered == 0 {
		t.Fatalf("the gateway took no offer from the relay (stats %+v): the path under test never ran", st)
	}
}

// TestSnapshotCoversAnOfferedPosition: while a relay's XADD is in flight,
// the gateway beside it has already handed out the offered position (a
// hello at T+1, the stream's tail still T). A snapshot asked for then must
// hold pixel T+1, because that client will never receive it as an event:
// the snapshot cache may not answer it with a build keyed by the tail T
// (made before the write), nor confirm that copy with a 304.
func TestSnapshotCoversAnOfferedPosition(t *testing.T) {
	xadd := newHold("relay:before-xadd")
	m := runMainWith(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0",
		"INSTANCE_ID": "offer-snap", "CANARY_INTERVAL": "0"}, func(m *Main) { m.testFailpoint = xadd.failpoint }, "serve")
	t.Cleanup(xadd.release) // before Close
	base := "http://" + m.Addr
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, m)
	snapshotCoversHeldOffer(t, m, base, xadd, 3, 4, "#123456")
	xadd.release()
}

// TestOfferBeforeRedisAmnesiaEndsWithTheStoreCanvas: Redis comes back
// empty while the gateway beside the relay still follows epoch E1 (held
// here before it rejoins). The relay, not knowing yet, numbers the next
// write in E1 and offers it: the hub takes it, and a client greeted now
// holds E1:N+1. Its snapshot's key names the open claim (N+1), so it holds
// the write; keyed by the empty stream's tail and the marked position
// alone, as before issue 28 item 3.3, the cache answered with a build from
// before the write. The XADD then fails (no epoch) and the relay starts
// E2, republishing what it had not published; the gateway, released
// first, resyncs its clients once to no epoch and then to E2. From E2 on
// the snapshot's key names the new epoch, so even the old key could not
// keep the client stale: its last snapshot must hold the write, and it
// must end with the store's canvas.
func TestOfferBeforeRedisAmnesiaEndsWithTheStoreCanvas(t *testing.T) {
	srv := redistest.MustStart(t, false)
	gw, relay := newHold("gateway:before-group-create"), newHold("relay:before-xadd")
	fp := func(name string) error {
		_ = gw.failpoint(name)
		return relay.failpoint(name)
	}
	m := runMainWith(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0",
		"REDIS_URL": srv.URL(), "INSTANCE_ID": "offer-amnesia", "CANARY_INTERVAL": "0"},
		func(m *Main) { m.testFailpoint = fp }, "serve")
	t.Cleanup(func() { gw.release(); relay.release() }) // before Close
	base := "http://" + m.Addr
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wait := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	reach := func(what string, c <-chan struct{}) {
		t.Helper()
		select {
		case <-c:
		case <-ctx.Done():
			t.Fatalf("never reached %s", what)
		}
	}
	if code := postStatus(t, base, `{"gx":1,"gy":1,"color":"#111111"}`); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	wait("the first write marked and broadcast", func() bool {
		n := m.gateway.Stats().LastSeq
		return n > 0 && m.relay.Status().Seq == n
	})
	e1, at := m.gateway.Stats().Epoch, m.gateway.Stats().LastSeq

	gw.armed.Store(true)
	if err := srv.Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	reach("the gateway's rejoin", gw.reached)
	stale, _ := getCanvas(t, base, "", "") // cached, keyed by the empty stream's tail
	t.Logf("snapshot after Redis came back empty: ETag %s", stale.Header.Get("ETag"))

	relay.armed.Store(true)
	if code := postStatus(t, base, `{"gx":2,"gy":2,"color":"#ABCDEF"}`); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	reach("the relay's XADD", relay.reached)
	if st := m.gateway.Stats(); st.Epoch != e1 || st.LastSeq != at+1 {
		t.Fatalf("gateway at %s:%d, want %s:%d (the offer in the old epoch): the path under test never ran", st.Epoch, st.LastSeq, e1, at+1)
	}

	var mu sync.Mutex
	var last map[[2]int]client.CanvasPixel
	x := client.New(client.Options{BaseURL: base, Name: "x", Logger: m.Logger, OnSnapshot: func(s map[[2]int]client.CanvasPixel) {
		mu.Lock()
		last = s
		mu.Unlock()
	}})
	xctx, xstop := context.WithCancel(ctx)
	xdone := make(chan error, 1)
	go func() { xdone <- x.Run(xctx) }()
	defer func() {
		xstop()
		if err := <-xdone; err != nil {
			t.Logf("client x ended: %v", err)
		}
	}()
	wait("client x greeted at the offered position with a snapshot", func() bool {
		return x.Position() == canvas.Position{Epoch: e1, Seq: at + 1} && x.Stats().Snapshots >= 1 && !x.Stats().SnapshotPending
	})
	_, has := x.Canvas()[[2]int{2, 2}]
	t.Logf("client x greeted at %s:%d; its snapshot holds the offered pixel: %v", e1, at+1, has)

	gw.release() // it rejoins with no epoch in Redis yet: a resync to none
	wait("a resync to no epoch", func() bool { return x.Stats().Resyncs >= 1 && !x.Stats().SnapshotPending })
	relay.release()

	want := func() (map[[2]int]client.CanvasPixel, error) {
		_, px, err := m.store.Snapshot(ctx)
		out := make(map[[2]int]client.CanvasPixel, len(px))
		for _, p := range px {
			out[[2]int{p.GX, p.GY}] = client.CanvasPixel{Color: p.Color, Version: p.Version}
		}
		return out, err
	}
	var why string
	for {
		why = func() string {
			e := m.gateway.Stats().Epoch
			if e == "" || e == e1 {
				return "the gateway has not reached a new epoch (at " + e + ")"
			}
			st := x.Stats()
			if x.Position().Epoch != e || st.SnapshotPending {
				return fmt.Sprintf("client x at %s (pending snapshot %v), gateway at %s", x.Position(), st.SnapshotPending, e)
			}
			store, err := want()
			if err != nil {
				return err.Error()
			}
			if got := x.Canvas(); !maps.Equal(got, store) {
				return fmt.Sprintf("client x's canvas (%d pixels) differs from the store's (%d): %v vs %v", len(got), len(store), got, store)
			}
			mu.Lock()
			defer mu.Unlock()
			if p, ok := last[[2]int{2, 2}]; !ok || p.Color != store[[2]int{2, 2}].Color {
				return fmt.Sprintf("client x's last snapshot, loaded in epoch %s, lacks the pixel written before it: %v", e, last)
			}
			return ""
		}()
		if why == "" {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSnapshotOfAnAPIWithoutAGatewayCoversAnOfferedPosition: behind one
// balancer (MongoDB), a `serve` process leads the relay and its gateway
// takes offers, while another process serves the api alone (the `api`
// role, or a `serve` whose relay stands by). A client greeted by the first
// at offered position T+1 (the tail still T) asks the second for the
// snapshot: the second's key must not name a build from before the write
// (nor confirm that copy with a 304), though no hub of its own is ahead.
// The second api here shares the first's store and Redis, wired as a
// process without a gateway is (snapshotKey with no gateway).
func TestSnapshotOfAnAPIWithoutAGatewayCoversAnOfferedPosition(t *testing.T) {
	xadd := newHold("relay:before-xadd")
	m := runMainWith(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0",
		"INSTANCE_ID": "offer-remote-snap", "CANARY_INTERVAL": "0"}, func(m *Main) { m.testFailpoint = xadd.failpoint }, "serve")
	t.Cleanup(xadd.release) // before Close
	base := "http://" + m.Addr
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, m)
	aopts := m.Config.APIOptions()
	aopts.SnapshotKey = snapshotKey(m.store, m.stream, nil)
	aopts.Logger = m.Logger
	other, err := api.New(m.store, aopts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(other)
	defer srv.Close()

	snapshotCoversHeldOffer(t, m, srv.URL, xadd, 5, 6, "#654321")
	xadd.release()
}

// snapshotCoversHeldOffer takes a snapshot from snapURL (cached there,
// keyed by the tail T), places (gx, gy) colour through m with the relay's
// XADD held by xadd, greets a client at
// the offered entry T+1, and requires snapURL's next snapshot to be neither
// a 304 for the first one nor a copy without the pixel.
func snapshotCoversHeldOffer(t *testing.T, m *Main, snapURL string, xadd *hold, gx, gy int, color string) {
	t.Helper()
	first, _ := getCanvas(t, snapURL, "", "")
	before := first.Header.Get("ETag")
	if first.StatusCode != http.StatusOK || before == "" {
		t.Fatalf("first snapshot: %d, ETag %q", first.StatusCode, before)
	}
	at := m.gateway.Stats().LastSeq
	xadd.armed.Store(true)
	body := fmt.Sprintf(`{"gx":%d,"gy":%d,"color":%q}`, gx, gy, color)
	if code := postStatus(t, "http://"+m.Addr, body); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	select {
	case <-xadd.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the relay never reached its XADD")
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+m.Addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var hello protocol.ServerFrame
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello: %+v, %v", hello, err)
	}
	if hello.Seq != at+1 {
		t.Fatalf("hello at seq %d with the XADD held, want %d (the offered entry): the path under test never ran", hello.Seq, at+1)
	}
	again, got := getCanvas(t, snapURL, "", before)
	if again.StatusCode == http.StatusNotModified {
		t.Fatalf("a client at offered seq %d got 304 from %s for the snapshot made at %s, before the write", hello.Seq, snapURL, before)
	}
	var snap struct {
		Pixels []struct {
			GX, GY int
			Color  string
		}
	}
	if err := json.Unmarshal(got, &snap); err != nil {
		t.Fatalf("snapshot (%d, ETag %s): %v", again.StatusCode, again.Header.Get("ETag"), err)
	}
	if !slices.ContainsFunc(snap.Pixels, func(p struct {
		GX, GY int
		Color  string
	}) bool {
		return p.GX == gx && p.GY == gy && p.Color == color
	}) {
		t.Fatalf("a client at offered seq %d got from %s a snapshot (ETag %s, first was %s) without that pixel", hello.Seq, snapURL, again.Header.Get("ETag"), before)
	}
}

// hold, as (part of) a Main's testFailpoint, holds the first hit of its
// failpoint after it was armed: reached is signalled when a goroutine gets
// there, which then waits for release.
type hold struct {
	name    string
	armed   atomic.Bool
	reached chan struct{}
	free    chan struct{}
	once    sync.Once
}

func newHold(name string) *hold {
	return &hold{name: name, reached: make(chan struct{}, 1), free: make(chan struct{})}
}

func (h *hold) failpoint(name string) error {
	if name == h.name && h.armed.CompareAndSwap(true, false) {
		h.reached <- struct{}{}
		<-h.free
	}
	return nil
}

// release lets the held goroutine go on, and every later hit; it may be
// called again.
func (h *hold) release() { h.once.Do(func() { close(h.free) }) }
