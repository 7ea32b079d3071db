package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

func filtered(from uint64, evs ...ev) map[string]any {
	m := events(evs...)
	m["from"] = from
	return m
}

func subscribed(seq uint64, regions ...canvas.Region) map[string]any {
	return map[string]any{"type": "subscribed", "epoch": "e1", "seq": seq, "all": false, "regions": regions}
}

// readSub reads the client's next subscribe or unsubscribe frame.
func readSub(t *testing.T, ws *websocket.Conn) protocol.Subscribe {
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	_, b, err := ws.ReadMessage()
	var s protocol.Subscribe
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Errorf("reading a subscribe frame: %v", err)
	}
	return s
}

// The client rules of docs/protocol.md "Regions", against a scripted
// gateway: it connects with ?regions=, loads a region snapshot after the
// hello; a subscribe keeps the new region's events from the send, loads
// that region's snapshot on the acknowledgement and applies the kept
// events above the snapshot's position again; events outside its regions
// are not applied; a filtered frame's from that leaves a hole reconnects
// with since and the regions; a hello without resumed reloads every
// region held; an unsubscribe drops the region's pixels.
func TestClientRegions(t *testing.T) {
	ackSeen := make(chan struct{})
	subSent := make(chan struct{})
	f := newFake(t,
		func(ws *websocket.Conn, _ string) {
			send(ws, hello("e1", 10, false))
			send(ws, filtered(11, ev{Seq: 12, GX: 1, GY: 1, Color: "#000001", Version: 1}))
			<-subSent
			if s := readSub(t, ws); s.Type != protocol.TypeSubscribe || fmt.Sprint(s.Regions) != "[1]" || s.All {
				t.Errorf("subscribe frame %+v, want regions [1]", s)
			}
			// Before the acknowledgement: region 1's events are kept.
			send(ws, filtered(13,
				ev{Seq: 14, GX: 65, GY: 0, Color: "#000002", Version: 5},
				ev{Seq: 15, GX: 66, GY: 0, Color: "#000003", Version: 1}))
			send(ws, subscribed(15, 0, 1))
			<-ackSeen
			send(ws, filtered(16,
				ev{Seq: 20, GX: 2, GY: 2, Color: "#000004", Version: 1},
				ev{Seq: 21, GX: 320, GY: 0, Color: "#000005", Version: 1})) // region 5: not ours
			send(ws, filtered(25, ev{Seq: 25, GX: 3, GY: 3, Color: "#000006", Version: 1})) // a hole: 22..24
			hold(ws)
		},
		func(ws *websocket.Conn, since string) {
			if since != "e1:21" {
				t.Errorf("reconnected with since=%q, want e1:21", since)
			}
			send(ws, hello("e1", 30, false))
			hold(ws)
		})
	snapshots := map[string]string{
		"0":   `{"width":256,"height":256,"position":{"epoch":"e1","seq":10},"pixels":[{"gx":0,"gy":0,"color":"#0000AA","version":1}]}`,
		"1":   `{"width":256,"height":256,"position":{"epoch":"e1","seq":14},"pixels":[{"gx":65,"gy":0,"color":"#000002","version":5},{"gx":70,"gy":3,"color":"#000007","version":2}]}`,
		"0,1": `{"width":256,"height":256,"position":{"epoch":"e1","seq":30},"pixels":[{"gx":0,"gy":0,"color":"#0000AA","version":1},{"gx":70,"gy":3,"color":"#000007","version":2},{"gx":65,"gy":0,"color":"#000002","version":5},{"gx":66,"gy":0,"color":"#000003","version":1},{"gx":1,"gy":1,"color":"#000001","version":1},{"gx":2,"gy":2,"color":"#000004","version":1},{"gx":3,"gy":3,"color":"#000006","version":1}]}`,
	}
	fn := func(list string) string { return snapshots[list] }
	f.regions.Store(&fn)
	var mu sync.Mutex
	var changes []client.RegionChange
	c := run(t, client.Options{BaseURL: f.srv.URL, Regions: []canvas.Region{0}, OnRegions: func(ch client.RegionChange) {
		mu.Lock()
		changes = append(changes, ch)
		mu.Unlock()
	}})
	if q := <-f.queries; q.Get("regions") != "0" || q.Has("since") {
		t.Fatalf("first connection's query %v, want regions=0", q)
	}
	if got := <-f.regionAsks; got != "0" {
		t.Fatalf("after the hello the client loaded regions %q, want 0", got)
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if p := c.Position(); p.Seq != 12 {
			return fmt.Errorf("position %v", p)
		}
		return nil
	})
	if err := c.Subscribe(context.Background(), 1, 0); err != nil { // 0 is held: only 1 is asked for
		t.Fatal(err)
	}
	close(subSent)
	if got := <-f.regionAsks; got != "1" {
		t.Fatalf("after the acknowledgement the client loaded regions %q, want 1", got)
	}
	want := map[[2]int]client.CanvasPixel{
		{0, 0}: {Color: 0x0000AA, Version: 1}, {1, 1}: {Color: 1, Version: 1}, // region 0
		{65, 0}: {Color: 2, Version: 5}, {70, 3}: {Color: 7, Version: 2}, // region 1's snapshot
		{66, 0}: {Color: 3, Version: 1}, // kept, above the snapshot's position
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if cv := c.Canvas(); fmt.Sprint(cv) != fmt.Sprint(want) {
			return fmt.Errorf("canvas %v, want %v", cv, want)
		}
		return nil
	})
	close(ackSeen)
	if q := <-f.queries; q.Get("regions") != "0,1" || q.Get("since") != "e1:21" {
		t.Fatalf("after the hole the client reconnected with %v, want since=e1:21&regions=0,1", q)
	}
	if got := <-f.regionAsks; got != "0,1" {
		t.Fatalf("after a hello without resumed the client loaded regions %q, want 0,1", got)
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.SnapshotPending || st.Snapshots != 3 {
			return fmt.Errorf("stats %+v", st)
		}
		if p := c.Position(); p.Seq != 30 {
			return fmt.Errorf("position %v", p)
		}
		return nil
	})
	cv := c.Canvas()
	if _, ok := cv[[2]int{320, 0}]; ok {
		t.Errorf("an event outside the client's regions was applied: %v", cv)
	}
	if len(cv) != 7 {
		t.Errorf("canvas %v, want the 7 pixels of regions 0 and 1", cv)
	}
	if st := c.Stats(); st.Gaps != 1 || st.Connects != 2 {
		t.Errorf("stats %+v, want 1 gap and 2 connections", st)
	}
	if err := c.Unsubscribe(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for p := range c.Canvas() {
		if canvas.RegionOf(p[0], p[1]) != 1 {
			t.Errorf("pixel %v of an unsubscribed region stayed", p)
		}
	}
	if all, rs := c.Regions(); all || fmt.Sprint(rs) != "[1]" {
		t.Errorf("Regions() = %v %v, want [1]", all, rs)
	}
	mu.Lock()
	defer mu.Unlock()
	var kinds []client.RegionChangeKind
	for _, ch := range changes {
		kinds = append(kinds, ch.Kind)
	}
	wantKinds := []client.RegionChangeKind{client.RegionsConnected, client.RegionsSent, client.RegionsAcked, client.RegionsConnected, client.RegionsSent}
	if fmt.Sprint(kinds) != fmt.Sprint(wantKinds) {
		t.Fatalf("OnRegions kinds %v, want %v", kinds, wantKinds)
	}
	if a := changes[2]; a.Position != (canvas.Position{Epoch: "e1", Seq: 15}) || fmt.Sprint(a.Regions) != "[0 1]" {
		t.Errorf("ack reported as %+v", a)
	}
	if h := changes[3]; h.Since != (canvas.Position{Epoch: "e1", Seq: 21}) || h.Resumed || fmt.Sprint(h.Regions) != "[0 1]" {
		t.Errorf("second hello reported as %+v", h)
	}
}

// Regions need JSON.
func TestClientRefusesRegionsWithBinary(t *testing.T) {
	c := client.New(client.Options{BaseURL: "http://127.0.0.1:1", Binary: true, Regions: []canvas.Region{1}})
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("Run accepted Regions with Binary")
	}
}

// A change made while a connection is being dialled, after its URL was
// written, is sent once that connection says hello: the connection holds
// what its URL named (so the hello reports that), and reconcile sends the
// difference. Without it the gateway would keep a dropped region and never
// send an added one.
func TestClientSendsChangesMadeWhileConnecting(t *testing.T) {
	frames := make(chan protocol.Subscribe, 4)
	f := newFake(t,
		func(ws *websocket.Conn, _ string) {
			send(ws, hello("e1", 0, false))
			for range 2 {
				frames <- readSub(t, ws)
			}
			send(ws, subscribed(0, 1))
			send(ws, subscribed(0, 1, 5))
			hold(ws)
		})
	fn := func(string) string {
		return `{"width":512,"height":512,"position":{"epoch":"e1","seq":0},"pixels":[]}`
	}
	f.regions.Store(&fn)
	gate := make(chan struct{})
	f.dialGate.Store(&gate) // held: the first connection's dial
	var mu sync.Mutex
	var changes []client.RegionChange
	c := run(t, client.Options{BaseURL: f.srv.URL, Regions: []canvas.Region{0, 1}, OnRegions: func(ch client.RegionChange) {
		mu.Lock()
		changes = append(changes, ch)
		mu.Unlock()
	}})
	if q := <-f.dialing; q.Get("regions") != "0,1" {
		t.Fatalf("dialled with %v", q)
	}
	// While the handshake hangs: drop 0, add 5.
	if err := c.Unsubscribe(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	close(gate)
	for _, want := range []string{"unsubscribe [0]", "subscribe [5]"} {
		select {
		case s := <-frames:
			if got := s.Type + " " + fmt.Sprint(s.Regions); got != want {
				t.Fatalf("after the hello the client sent %q, want %q", got, want)
			}
		case <-time.After(waitFor):
			t.Fatalf("the client never sent %q", want)
		}
	}
	gatewaytest.Eventually(t, waitFor, func() error {
		if st := c.Stats(); st.SnapshotPending || st.Connects != 1 || st.Snapshots < 2 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if h := changes[0]; h.Kind != client.RegionsConnected || fmt.Sprint(h.Regions) != "[0 1]" {
		t.Errorf("first hello reported as %+v, want what its URL named", h)
	}
}
