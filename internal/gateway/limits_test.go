package gateway_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/clientip"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// dialerFrom dials WebSockets from a loopback source address of its own
// (Linux routes all of 127.0.0.0/8 to lo), so one test plays many hosts.
func dialerFrom(ip string) *websocket.Dialer {
	nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &websocket.Dialer{HandshakeTimeout: 5 * time.Second, NetDialContext: nd.DialContext}
}

func wsURL(base, query string) string {
	return "ws" + strings.TrimPrefix(base, "http") + "/ws" + query
}

// One address holds at most MaxConnsPerIP connections (429 past it, with
// the documented body); other addresses are unaffected, and a closed
// connection frees its slot. Behind a trusted proxy the forwarded client
// counts, not the proxy.
func TestConnsPerIP(t *testing.T) {
	trusted, _ := clientip.ParseTrusted("127.0.0.1/32")
	f := newProto(t, 0, func(o *gateway.Options) { o.MaxConnsPerIP = 3; o.TrustedProxies = trusted })
	dial := func(d *websocket.Dialer, hdr http.Header) (*websocket.Conn, *http.Response, error) {
		ws, resp, err := d.Dial(wsURL(f.gw.URL, ""), hdr)
		if ws != nil {
			t.Cleanup(func() { _ = ws.Close() })
		}
		return ws, resp, err
	}
	a := dialerFrom("127.0.0.2")
	var held []*websocket.Conn
	for i := range 3 {
		ws, _, err := dial(a, nil)
		if err != nil {
			t.Fatalf("connection %d from 127.0.0.2: %v", i, err)
		}
		held = append(held, ws)
	}
	_, resp, err := dial(a, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("4th connection from one address: %v %v, want 429", resp, err)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := jsonBody(resp, &body); err != nil || body.Error.Code != "rate_limited" || body.Error.Message == "" {
		t.Errorf("429 body %+v (%v), want code rate_limited with a message", body, err)
	}
	if _, _, err := dial(dialerFrom("127.0.0.3"), nil); err != nil {
		t.Fatalf("another address is refused: %v", err)
	}
	// Behind a trusted proxy (127.0.0.1) each forwarded client has its own
	// cap, and the proxy's own address none.
	for i := range 4 {
		if _, _, err := dial(websocket.DefaultDialer, http.Header{"X-Forwarded-For": {fmt.Sprintf("203.0.113.%d", i)}}); err != nil {
			t.Fatalf("forwarded client %d: %v", i, err)
		}
	}
	// Closing one frees its slot.
	_ = held[0].Close()
	gatewaytest.Eventually(t, waitFor, func() error {
		ws, _, err := a.Dial(wsURL(f.gw.URL, ""), nil)
		if err != nil {
			return err
		}
		return ws.Close()
	})
}

// A client resuming from far behind that stops reading is degraded once
// its queue overflows, and the replay stops there: it gets the resync
// instead of the rest of the gap.
func TestReplayStopsWhenDegraded(t *testing.T) {
	const gap = 3000
	f := newProto(t, gap, func(o *gateway.Options) {
		o.QueueLen = 16
		o.SendBuffer = 8 << 10
		o.ReplayLimit = 5000
	})
	d := &websocket.Dialer{HandshakeTimeout: 5 * time.Second, ReadBufferSize: 1024,
		NetDialContext: (&net.Dialer{Control: smallReceiveBuffer}).DialContext}
	ws, _, err := d.Dial(wsURL(f.gw.URL, "?since=e1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// The replay is blocked on the client's full buffers; live events
	// overflow its queue.
	for f.gw.G.Stats().Degraded == 0 {
		f.pub.Publish(8)
		time.Sleep(5 * time.Millisecond)
	}
	if h := readFrame(t, ws); h.Type != "hello" || !h.Resumed {
		t.Fatalf("hello %+v, want resumed", h)
	}
	var last uint64
	for {
		fr := readFrame(t, ws)
		if fr.Type == "resync" {
			if fr.Reason != protocol.ReasonSlow {
				t.Fatalf("resync %+v, want reason slow", fr)
			}
			break
		}
		if fr.Type != "events" {
			t.Fatalf("frame %+v", fr)
		}
		for _, e := range fr.Events {
			if e.Seq != last+1 {
				t.Fatalf("seq %d after %d", e.Seq, last)
			}
			last = e.Seq
		}
	}
	if last >= gap {
		t.Fatalf("the whole gap (%d events) was replayed to a degraded client before its resync", last)
	}
	t.Logf("replay stopped after %d of %d events", last, gap)
}

// A connection replaying a long gap to a client that does not read holds
// a page of the gap, not the whole of it.
func TestReplayMemoryBounded(t *testing.T) {
	per := connMemory(t, 20, 10000, true)
	t.Logf("%.0f KiB per replaying connection", per/1024)
	if per > 1<<20 {
		t.Errorf("a replaying connection holds %.1f MiB, want under 1 MiB", per/(1<<20))
	}
}

// BenchmarkConnMemory reports the gateway's memory per WebSocket
// connection (Go heap and stacks; kernel socket buffers not included):
// idle, and replaying a 10,000-event gap to a client that stopped reading.
//
//	go test -run '^$' -bench ConnMemory -benchtime 1x ./internal/gateway/
func BenchmarkConnMemory(b *testing.B) {
	b.Run("idle", func(b *testing.B) {
		for range b.N {
			b.ReportMetric(connMemory(b, 200, 10, false), "bytes/conn")
		}
	})
	b.Run("replaying", func(b *testing.B) {
		for range b.N {
			b.ReportMetric(connMemory(b, 20, 10000, true), "bytes/conn")
		}
	})
}

// connMemory opens n raw connections to a gateway over a stream of
// entries events (resuming from its start when replay) whose clients never
// read, and returns the heap and stack growth per connection once the
// gateway has written all it can.
func connMemory(tb testing.TB, n, entries int, replay bool) float64 {
	f := newProto(tb, entries, func(o *gateway.Options) { o.ReplayLimit = 10000; o.MaxConnsPerIP = n + 1 })
	before := heapAndStacks()
	since := ""
	if replay {
		since = "e1:0"
	}
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = rawResume(tb, f.gw.URL, since, true)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	// Wait until nothing more is written: every replay has started writing
	// (a frame of 256 events or more each) and is blocked on its client's
	// full buffers.
	last := int64(-1)
	for {
		time.Sleep(300 * time.Millisecond)
		st := f.gw.G.Stats()
		if st.Clients == n && st.Delivered == last && (!replay || st.Delivered >= int64(n*256)) {
			break
		}
		last = st.Delivered
	}
	after := heapAndStacks()
	runtime.KeepAlive(conns)
	return float64(after-before) / float64(n)
}

func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// rawResume opens a WebSocket by hand with a 4 KiB receive buffer and
// reads only the handshake's answer: a client that never reads.
func rawResume(tb testing.TB, base, since string, small bool) net.Conn {
	tb.Helper()
	d := net.Dialer{}
	if small {
		d.Control = smallReceiveBuffer
	}
	host := strings.TrimPrefix(base, "http://")
	nc, err := d.Dial("tcp", host)
	if err != nil {
		tb.Fatal(err)
	}
	q := ""
	if since != "" {
		q = "?since=" + since
	}
	fmt.Fprintf(nc, "GET /ws%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", q, host)
	// Read the 101 byte by byte: nothing after it is consumed.
	var head []byte
	one := make([]byte, 1)
	_ = nc.SetReadDeadline(time.Now().Add(waitFor))
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := nc.Read(one); err != nil {
			tb.Fatalf("handshake: %v (%q)", err, head)
		}
		head = append(head, one[0])
	}
	_ = nc.SetReadDeadline(time.Time{})
	if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
		tb.Fatalf("handshake answered %q", head)
	}
	return nc
}

// smallReceiveBuffer sets a 4 KiB receive buffer before connecting (which
// also turns the kernel's autotuning off).
func smallReceiveBuffer(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil {
		return err
	}
	return serr
}

func jsonBody(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
