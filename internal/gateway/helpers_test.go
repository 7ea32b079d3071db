package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

const waitFor = 8 * time.Second

// newRedis returns a client of srv, closed when the test ends.
func newRedis(t testing.TB, srv *redisproc.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// waitRedis waits until srv answers again through rdb.
func waitRedis(t testing.TB, rdb *redis.Client) {
	t.Helper()
	gatewaytest.Eventually(t, waitFor, func() error { return rdb.Ping(context.Background()).Err() })
}

// opts are gateway options sized for tests.
func opts(rdb redis.UniversalClient, id string) gateway.Options {
	return gateway.Options{
		Redis: rdb, Canvas: "t", InstanceID: id,
		HeartbeatInterval: 100 * time.Millisecond, GroupTTL: 5 * time.Second,
		Logger: gatewaytest.Logger(),
	}
}

// startClients runs n clients against baseURL; they stop when the test ends.
func startClients(t testing.TB, n int, baseURL, snapURL string, tweak func(*client.Options)) []*client.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	out := make([]*client.Client, n)
	for i := range out {
		o := client.Options{BaseURL: baseURL, SnapshotURL: snapURL, Name: fmt.Sprintf("c%d", i), Logger: gatewaytest.Logger()}
		if tweak != nil {
			tweak(&o)
		}
		c := client.New(o)
		out[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil {
				t.Errorf("client run: %v", err)
			}
		}()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	// Every client has its position before the test publishes more.
	gatewaytest.Eventually(t, waitFor, func() error {
		for i, c := range out {
			if st := c.Stats(); st.Snapshots == 0 || st.SnapshotPending {
				return fmt.Errorf("client %d not connected yet", i)
			}
		}
		return nil
	})
	return out
}

// converged reports why c's canvas or position differs from p's, or nil.
func converged(c *client.Client, p *gatewaytest.Publisher) error {
	want, pos := p.Pixels(), p.Position()
	if got := c.Position(); got != pos {
		return fmt.Errorf("position %s, want %s", got, pos)
	}
	st := c.Stats()
	if st.SnapshotPending {
		return fmt.Errorf("snapshot pending")
	}
	got := c.Canvas()
	if len(got) != len(want) {
		return fmt.Errorf("canvas has %d pixels, want %d", len(got), len(want))
	}
	for k, w := range want {
		if g := got[k]; g.Color != w.Color || g.Version != w.Version {
			return fmt.Errorf("pixel %v is %v/v%d, want %v/v%d", k, g.Color, g.Version, w.Color, w.Version)
		}
	}
	return nil
}

// caughtUp reports whether c's position is p's.
func caughtUp(c *client.Client, p *gatewaytest.Publisher) error {
	if got, want := c.Position(), p.Position(); got != want {
		return fmt.Errorf("position %s, want %s", got, want)
	}
	return nil
}

// waitConverged waits until every client converged to p.
func waitConverged(t testing.TB, p *gatewaytest.Publisher, cs ...*client.Client) {
	t.Helper()
	gatewaytest.Eventually(t, waitFor, func() error {
		for i, c := range cs {
			if err := converged(c, p); err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
		}
		return nil
	})
}

// contiguous checks that c received, without duplicates counted as new,
// every sequence number of epoch from its first event to `to`, and returns
// the first.
func contiguous(t testing.TB, c *client.Client, epoch string, to uint64) uint64 {
	t.Helper()
	var first, last uint64
	for _, r := range c.History() {
		if r.Dup || r.Epoch != epoch {
			continue
		}
		if first == 0 {
			first, last = r.Event.Seq, r.Event.Seq
			continue
		}
		if r.Event.Seq != last+1 {
			t.Fatalf("client received seq %d after %d", r.Event.Seq, last)
		}
		last = r.Event.Seq
	}
	if last != to {
		t.Fatalf("client's last seq is %d, want %d", last, to)
	}
	return first
}

// rawDial opens a bare WebSocket to a gateway.
func rawDial(t testing.TB, baseURL, query string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(baseURL, "http") + "/ws" + query
	ws, resp, err := websocket.DefaultDialer.Dial(u, hdr)
	if ws != nil {
		t.Cleanup(func() { _ = ws.Close() })
	}
	return ws, resp, err
}

func readFrame(t testing.TB, ws *websocket.Conn) protocol.ServerFrame {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(waitFor))
	mt, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read frame: %v", err)
	}
	if mt != websocket.TextMessage {
		t.Fatalf("frame type %d, want text", mt)
	}
	var f protocol.ServerFrame
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("frame %s: %v", data, err)
	}
	return f
}

// readEvents reads frames until it has seen events up to seq `to`,
// returning the sequence numbers in order; any other frame fails the test.
func readEvents(t testing.TB, ws *websocket.Conn, to uint64) []uint64 {
	t.Helper()
	var seqs []uint64
	for len(seqs) == 0 || seqs[len(seqs)-1] < to {
		f := readFrame(t, ws)
		if f.Type != "events" {
			t.Fatalf("got %+v, want events", f)
		}
		for _, e := range f.Events {
			seqs = append(seqs, e.Seq)
		}
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// newRig is where every gateway test starts: a real redis-server (with AOF
// when appendOnly), a client of it, and a publisher of canvas "t" (on a
// client of its own) in epoch e1.
func newRig(t testing.TB, appendOnly bool) (*redisproc.Server, *redis.Client, *gatewaytest.Publisher) {
	t.Helper()
	srv := redistest.MustStart(t, appendOnly)
	pub := gatewaytest.NewPublisher(t, newRedis(t, srv), "t")
	pub.StartEpoch("e1")
	return srv, newRedis(t, srv), pub
}

// startReady runs gateway id (test options) on rdb, serving pub's
// snapshot, and waits until it follows epoch e1.
func startReady(t testing.TB, rdb *redis.Client, pub *gatewaytest.Publisher, id string) *gatewaytest.Server {
	t.Helper()
	gw := gatewaytest.Start(t, opts(rdb, id), pub)
	gw.WaitReady(t, "e1")
	return gw
}
