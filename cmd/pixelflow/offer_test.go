package main

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/pace"
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
	w := cluster.NewWriter(base, rec, 16)
	w.Retries = 0
	done := make(chan pace.Result, 1)
	go func() {
		rngs := make([]*rand.Rand, 16)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), 1))
		}
		done <- pace.Pacer{Rate: 200, Total: total, Workers: 16}.Run(ctx, func(i int, _ time.Time) { w.PlaceRandom(ctx, rngs[i]) })
	}()
	waitAcked := func(n int) {
		t.Helper()
		for w.Acked() < n {
			if ctx.Err() != nil {
				t.Fatalf("only %d writes acknowledged, want %d", w.Acked(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
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
	var armed atomic.Bool
	reached, release := make(chan struct{}, 1), make(chan struct{})
	hold := func(name string) error {
		if name == "relay:before-xadd" && armed.Load() {
			select {
			case reached <- struct{}{}:
			default:
			}
			<-release
		}
		return nil
	}
	m := runMainWith(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "RATE_LIMIT": "0",
		"INSTANCE_ID": "offer-snap", "CANARY_INTERVAL": "0"}, func(m *Main) { m.testFailpoint = hold }, "serve")
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before Close
	base := "http://" + m.Addr
	if err := waitReady(base); err != nil {
		t.Fatal(err)
	}
	waitEpoch(t, m)
	first, _ := getCanvas(t, base, "", "") // cached, keyed by the tail T
	before := first.Header.Get("ETag")
	if first.StatusCode != http.StatusOK || before == "" {
		t.Fatalf("first snapshot: %d, ETag %q", first.StatusCode, before)
	}
	at := m.gateway.Stats().LastSeq

	armed.Store(true)
	if code := postStatus(t, base, `{"gx":3,"gy":4,"color":"#123456"}`); code != http.StatusCreated {
		t.Fatalf("POST: %d", code)
	}
	select {
	case <-reached:
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

	again, body := getCanvas(t, base, "", before)
	code, etag := again.StatusCode, again.Header.Get("ETag")
	if code == http.StatusNotModified {
		t.Fatalf("a client at offered seq %d got 304 for the snapshot made at %s, before the write", hello.Seq, before)
	}
	var snap struct {
		Pixels []struct {
			GX, GY int
			Color  string
		}
	}
	if err := json.Unmarshal(body, &snap); err != nil {
		t.Fatalf("snapshot (%d, ETag %s): %v", code, etag, err)
	}
	if !slices.ContainsFunc(snap.Pixels, func(p struct {
		GX, GY int
		Color  string
	}) bool {
		return p.GX == 3 && p.GY == 4 && p.Color == "#123456"
	}) {
		t.Fatalf("a client at offered seq %d got a snapshot (ETag %s, first was %s) without that pixel", hello.Seq, etag, before)
	}
	once.Do(func() { close(release) })
}
