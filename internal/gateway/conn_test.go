package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// A lone event is written at once, and what arrives within FlushWindow of
// that write waits for the window and shares one frame, in order.
func TestFlushWindowBatchesWhatFollowsAWrite(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never used: Run is not started
	defer rdb.Close()
	// Long enough that the three broadcasts below certainly fall inside it.
	g, err := New(Options{Redis: rdb, InstanceID: "t", FlushWindow: 2 * time.Second,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	g.hub.pos = canvas.Position{Epoch: "e"}
	srv := httptest.NewServer(g)
	defer srv.Close()
	defer g.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, _, err := ws.ReadMessage(); err != nil { // hello: registered
		t.Fatal(err)
	}
	send := func(seq uint64) {
		e := stream.Entry{Event: canvas.Event{ID: "ev", Kind: canvas.KindPixel, Color: 0x336699,
			Version: 1, CommittedAt: time.Now(), Epoch: "e", Seq: seq}}
		g.hub.broadcast(e.Epoch, e.Seq, []stream.Entry{e})
	}
	read := func() []uint64 {
		t.Helper()
		_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		var f struct {
			Type   string `json:"type"`
			Events []struct {
				Seq uint64 `json:"seq"`
			} `json:"events"`
		}
		if err := ws.ReadJSON(&f); err != nil {
			t.Fatal(err)
		}
		if f.Type != protocol.TypeEvents {
			t.Fatalf("frame type %q, want events", f.Type)
		}
		var seqs []uint64
		for _, e := range f.Events {
			seqs = append(seqs, e.Seq)
		}
		return seqs
	}
	send(1)
	if got := read(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("first frame %v, want [1]", got)
	}
	send(2)
	send(3)
	send(4)
	if got := read(); !slices.Equal(got, []uint64{2, 3, 4}) {
		t.Fatalf("second frame %v, want [2 3 4] in one frame", got)
	}
	// Counted once a write returns, which may be after the client read it.
	for deadline := time.Now().Add(10 * time.Second); g.Stats().Delivered != 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("delivered %d, want 4", g.Stats().Delivered)
		}
	}
}

// seqBatch is a batch of canaries numbered from first: the smallest events
// there are, so frames stay readable in a test's messages.
func seqBatch(first uint64, n int) *batch {
	evs := make([]wireEvent, n)
	for i := range evs {
		evs[i] = wireEvent{seq: first + uint64(i), canary: true}
	}
	return newBatch(first, evs)
}

// The frame a lone batch is sent as is byte for byte the one assembled for
// several batches, so sharing it changes nothing on the wire, in every
// format.
func TestSharedFrameMatchesJoinedFrame(t *testing.T) {
	for f := range numFormats {
		b := seqBatch(1, 2)
		var joined [][]byte
		want, n, _ := assembleFrames(nil, f, []item{{batch: seqBatch(1, 1)}, {batch: seqBatch(2, 1)}}, &joined)
		if n != 2 {
			t.Fatalf("format %d: assembled %d events, want 2", f, n)
		}
		if got := b.sharedWire(f); string(got) != string(want) {
			t.Fatalf("format %d: shared frame %q, want %q", f, got, want)
		}
		payload := appendEventsPayload(nil, f, 1, b.events(f))
		if got := b.sharedWire(f); string(got) != string(appendFrame(nil, messageOp(f), payload)) {
			t.Fatalf("format %d: shared frame %q is not the frame of %s", f, got, payload)
		}
		if f.binary() {
			fr, err := protocol.DecodeBinary(payload)
			if err != nil || fr.Type != protocol.TypeEvents || len(fr.Events) != 2 || fr.Events[1].Seq != 2 {
				t.Fatalf("frame %x does not decode as events 1 and 2: %+v %v", payload, fr, err)
			}
			continue
		}
		var fr struct {
			Type   string            `json:"type"`
			Events []json.RawMessage `json:"events"`
		}
		if err := json.Unmarshal(payload, &fr); err != nil || fr.Type != protocol.TypeEvents || len(fr.Events) != 2 {
			t.Fatalf("frame %s does not parse as two events: %v", payload, err)
		}
	}
}

// Batches whose sequences do not run on are never joined into one frame:
// a binary frame names only its first sequence, and would renumber the
// second batch's events.
func TestAssembleSplitsAtASequenceJump(t *testing.T) {
	var joined [][]byte
	data, n, _ := assembleFrames(nil, binaryFormat, []item{{batch: seqBatch(1, 2)}, {batch: seqBatch(7, 1)}}, &joined)
	want := append(appendEventsWire(nil, binaryFormat, 1, seqBatch(1, 2).events(binaryFormat)),
		appendEventsWire(nil, binaryFormat, 7, seqBatch(7, 1).events(binaryFormat))...)
	if n != 3 || string(data) != string(want) {
		t.Fatalf("assembled %d events as %x, want 3 as %x", n, data, want)
	}
}

// The frames the gateway writes itself are read back intact by a standard
// WebSocket client at every length encoding (7-bit, 16-bit, 64-bit), and a
// queue of control frames and batches comes out as separate messages in
// order.
func TestRawFramesReadByGorilla(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 65535, 65536, 70000}
	payload := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var buf []byte
		for _, n := range sizes {
			buf = appendFrame(buf, opText, payload(n))
		}
		var joined [][]byte
		q := []item{{batch: seqBatch(1, 1)}, {ctl: textFrame(pongFrame)}, {batch: seqBatch(2, 1)}, {batch: seqBatch(3, 1)}}
		data, _, _ := assembleFrames(nil, 0, q, &joined)
		buf = append(buf, data...)
		_, _ = ws.NetConn().Write(buf)
		_, _, _ = ws.ReadMessage() // until the client closes
	}))
	defer srv.Close()
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, n := range sizes {
		mt, got, err := ws.ReadMessage()
		if err != nil || mt != websocket.TextMessage || string(got) != string(payload(n)) {
			t.Fatalf("frame of %d bytes: type %d, %d bytes, %v", n, mt, len(got), err)
		}
	}
	for _, want := range []string{`{"type":"events","events":[{"seq":1,"kind":"canary"}]}`, `{"type":"pong"}`,
		`{"type":"events","events":[{"seq":2,"kind":"canary"},{"seq":3,"kind":"canary"}]}`} {
		if _, got, err := ws.ReadMessage(); err != nil || string(got) != want {
			t.Fatalf("got %s (%v), want %s", got, err, want)
		}
	}
}

// TestTryWriteDoesNotAllocate: the flushers' non-blocking write is made
// once per socket, not per write (a closure built per write escaped to the
// heap: 6 % of the server's allocation at 1,000 writes/s).
func TestTryWriteDoesNotAllocate(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	go func() { _, _ = io.Copy(io.Discard, client) }()
	raw, err := server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	s := newSocket()
	s.nc, s.raw = server, raw
	p := []byte("a frame")
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := s.tryWrite(p); err != nil || n != len(p) {
			t.Fatalf("tryWrite = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("tryWrite allocates %.1f times per write, want 0", allocs)
	}
}

// TestSocketTurnIsExclusiveAndWakesWaiters: the turn (a flag and a wake-up
// channel, not a channel lock) admits one holder at a time, whichever way
// it is taken, and a release always wakes a waiter: goroutines take it by
// tryLock, lock and lockBy, and hand it on, thousands of times; none may
// find another inside, and none may sleep through a release (the test
// would hang until its deadline).
func TestSocketTurnIsExclusiveAndWakesWaiters(t *testing.T) {
	s := newSocket()
	done := make(chan struct{})
	var inside atomic.Int32
	var held int // guarded by the turn; the race detector checks it
	const rounds = 3000
	var wg sync.WaitGroup
	enter := func() {
		if n := inside.Add(1); n != 1 {
			t.Errorf("%d holders of the turn at once", n)
		}
		held++
		runtime.Gosched() // a wide window for another holder to show
		inside.Add(-1)
		s.unlock()
	}
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				switch (g + i) % 3 {
				case 0:
					for !s.tryLock() {
						runtime.Gosched()
					}
				case 1:
					if !s.lock(done) {
						t.Error("lock gave up with done open")
						return
					}
				case 2:
					if !s.lockBy(time.Now().Add(time.Minute)) {
						t.Error("lockBy timed out with a minute to go")
						return
					}
				}
				enter()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("a waiter slept through a release")
	}
	if held != 4*rounds {
		t.Fatalf("the turn was held %d times, want %d", held, 4*rounds)
	}
	// Held, the turn makes lock wait until done closes and lockBy until its
	// deadline.
	if !s.tryLock() {
		t.Fatal("the free turn was refused")
	}
	close(done)
	if s.lock(done) {
		t.Fatal("lock took a held turn")
	}
	if s.lockBy(time.Now().Add(20 * time.Millisecond)) {
		t.Fatal("lockBy took a held turn")
	}
}
