// Package gatewaytest drives gateways in tests with the real stream format:
// a Publisher that appends entries exactly as the relay does (stream.Publish)
// and remembers what it "committed", a fake GET /api/canvas built from that,
// and a helper that runs a gateway behind an httptest server.
//
// Logs are discarded unless PF_TEST_LOG is set (to "debug" for everything).
package gatewaytest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// Pixel is a pixel's committed state.
type Pixel struct {
	Color   canvas.Color
	Version int64
}

// Publisher plays outbox + relay for tests. Its methods must be called from
// the test goroutine (they fail the test on errors); the snapshot handler
// may be called from anywhere.
type Publisher struct {
	tb   testing.TB
	st   *stream.Stream
	size canvas.Size
	rng  *rand.Rand

	mu      sync.Mutex
	epoch   string
	seq     uint64
	pixels  map[[2]int]Pixel
	entries []stream.Entry // of the current epoch
	ids     int
}

// NewPublisher publishes to canvas name on rdb (stream bounded at 100000
// entries, canvas 64×64). Call StartEpoch before publishing.
func NewPublisher(tb testing.TB, rdb redis.UniversalClient, name string) *Publisher {
	return &Publisher{
		tb:     tb,
		st:     stream.New(rdb, name, 100000),
		size:   canvas.Size{Width: 64, Height: 64},
		rng:    rand.New(rand.NewPCG(uint64(len(tb.Name())), 42)),
		pixels: make(map[[2]int]Pixel),
	}
}

// StartEpoch empties the stream under a new epoch, as the relay does when
// Redis lost its data. Committed pixels are kept (they are in the database).
func (p *Publisher) StartEpoch(epoch string) {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.st.StartEpoch(context.Background(), 1, epoch); err != nil {
		p.tb.Fatalf("start epoch: %v", err)
	}
	p.epoch, p.seq, p.entries = epoch, 0, nil
}

// Publish commits and publishes n events on random pixels, returns them.
func (p *Publisher) Publish(n int) []stream.Entry {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]stream.Entry, 0, n)
	for range n {
		k := [2]int{p.rng.IntN(p.size.Width), p.rng.IntN(p.size.Height)}
		px := Pixel{Color: canvas.Color(p.rng.Uint32() & 0xFFFFFF), Version: p.pixels[k].Version + 1}
		p.pixels[k] = px
		out = append(out, p.entryLocked(canvas.KindPixel, k, px))
	}
	p.publishLocked(out)
	return out
}

// PublishAt commits and publishes one event on each of the pixels at, in
// order (any coordinates of the largest canvas: the publisher's size
// bounds only Publish), and returns them.
func (p *Publisher) PublishAt(at ...[2]int) []stream.Entry {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]stream.Entry, 0, len(at))
	for _, k := range at {
		px := Pixel{Color: canvas.Color(p.rng.Uint32() & 0xFFFFFF), Version: p.pixels[k].Version + 1}
		p.pixels[k] = px
		out = append(out, p.entryLocked(canvas.KindPixel, k, px))
	}
	p.publishLocked(out)
	return out
}

// PublishCanary publishes one canary event (no pixel changes).
func (p *Publisher) PublishCanary() stream.Entry {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entryLocked(canvas.KindCanary, [2]int{0, 0}, Pixel{})
	p.publishLocked([]stream.Entry{e})
	return e
}

// Republish publishes every committed pixel's current state again, as the
// relay republishes from the outbox into a new epoch. It returns the count.
func (p *Publisher) Republish() int {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := make([][2]int, 0, len(p.pixels))
	for k := range p.pixels {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i][0] < keys[j][0] || keys[i][0] == keys[j][0] && keys[i][1] < keys[j][1]
	})
	out := make([]stream.Entry, 0, len(keys))
	for _, k := range keys {
		out = append(out, p.entryLocked(canvas.KindPixel, k, p.pixels[k]))
	}
	p.publishLocked(out)
	return len(out)
}

func (p *Publisher) entryLocked(kind canvas.Kind, k [2]int, px Pixel) stream.Entry {
	p.ids++
	p.seq++
	now := time.Now()
	return stream.Entry{Event: canvas.Event{
		ID: "ev" + strconv.Itoa(p.ids), Kind: kind, GX: k[0], GY: k[1], Color: px.Color,
		Version: px.Version, CommittedAt: now, Epoch: p.epoch, Seq: p.seq,
	}, PublishedAt: now}
}

func (p *Publisher) publishLocked(entries []stream.Entry) {
	p.tb.Helper()
	tail := p.seq - uint64(len(entries))
	for len(entries) > 0 {
		n := min(len(entries), 500)
		if err := p.st.Publish(context.Background(), 1, p.epoch, tail, entries[:n]); err != nil {
			p.tb.Fatalf("publish %d entries after %d: %v", n, tail, err)
		}
		p.entries = append(p.entries, entries[:n]...)
		tail += uint64(n)
		entries = entries[n:]
	}
}

// Position is the last published (epoch, seq).
func (p *Publisher) Position() canvas.Position {
	p.mu.Lock()
	defer p.mu.Unlock()
	return canvas.Position{Epoch: p.epoch, Seq: p.seq}
}

// Pixels returns a copy of the committed canvas.
func (p *Publisher) Pixels() map[[2]int]Pixel {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.pixels)
}

// Entries returns the entries published in the current epoch.
func (p *Publisher) Entries() []stream.Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]stream.Entry(nil), p.entries...)
}

// ServeHTTP answers GET /api/canvas like the api package: position, then
// every committed pixel.
func (p *Publisher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	type pixelJSON struct {
		GX      int    `json:"gx"`
		GY      int    `json:"gy"`
		Color   string `json:"color"`
		Version int64  `json:"version"`
	}
	p.mu.Lock()
	out := struct {
		Width    int             `json:"width"`
		Height   int             `json:"height"`
		Position canvas.Position `json:"position"`
		Pixels   []pixelJSON     `json:"pixels"`
	}{Width: p.size.Width, Height: p.size.Height, Position: canvas.Position{Epoch: p.epoch, Seq: p.seq}, Pixels: []pixelJSON{}}
	for k, v := range p.pixels {
		out.Pixels = append(out.Pixels, pixelJSON{GX: k[0], GY: k[1], Color: v.Color.String(), Version: v.Version})
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// Server is a gateway running behind an httptest server.
type Server struct {
	G *gateway.Gateway
	// URL is the http://127.0.0.1:port base URL; /ws is the gateway and,
	// if a snapshot handler was given, /api/canvas serves it.
	URL  string
	HTTP *httptest.Server

	cancel context.CancelFunc
	done   chan struct{}
	runErr error
	once   sync.Once
}

// Logger returns the logger tests give gateways and clients.
func Logger() *slog.Logger {
	switch os.Getenv("PF_TEST_LOG") {
	case "":
		return slog.New(slog.DiscardHandler)
	case "debug":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// Start creates the gateway (opts.Logger defaults to Logger()), serves it
// at /ws (and snapshot at /api/canvas when non-nil) and runs it. The test's
// cleanup stops it. Use New + Run yourself to install test hooks first.
func Start(tb testing.TB, opts gateway.Options, snapshot http.Handler) *Server {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	g, err := gateway.New(opts)
	if err != nil {
		tb.Fatalf("new gateway: %v", err)
	}
	return Serve(tb, g, snapshot)
}

// Serve serves and runs an existing gateway; the test's cleanup stops it.
func Serve(tb testing.TB, g *gateway.Gateway, snapshot http.Handler) *Server {
	tb.Helper()
	return ServeOn(tb, g, snapshot, nil)
}

// ServeOn is Serve with the listener wrapped by wrap (when non-nil), e.g.
// SmallSendBuffers.
func ServeOn(tb testing.TB, g *gateway.Gateway, snapshot http.Handler, wrap func(net.Listener) net.Listener) *Server {
	tb.Helper()
	mux := http.NewServeMux()
	mux.Handle("/ws", g)
	if snapshot != nil {
		mux.Handle("/api/canvas", snapshot)
	}
	hs := httptest.NewUnstartedServer(mux)
	if wrap != nil {
		hs.Listener = wrap(hs.Listener)
	}
	hs.Start()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{G: g, HTTP: hs, cancel: cancel, done: make(chan struct{})}
	s.URL = s.HTTP.URL
	go func() {
		defer close(s.done)
		s.runErr = g.Run(ctx)
	}()
	tb.Cleanup(s.Stop)
	return s
}

// Stop closes the clients, stops Run and the HTTP server. Idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.G.Close()
		s.cancel()
		<-s.done
		s.HTTP.Close()
	})
}

// Done is closed when Run has returned; Err is its result then.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err is what Run returned (valid after Done).
func (s *Server) Err() error { return s.runErr }

// SmallSendBuffers makes every accepted connection's kernel send buffer
// small (which also turns autotuning off), so a client that stops reading
// backs up into the gateway's queue after kilobytes instead of megabytes.
func SmallSendBuffers(l net.Listener) net.Listener { return smallSendBuffers{l} }

type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8 << 10)
	}
	return c, err
}

// Eventually polls cond every 10ms until it returns nil, failing the test
// with cond's last error after timeout.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitReady waits until the gateway reads its group and follows epoch.
func (s *Server) WaitReady(tb testing.TB, epoch string) {
	tb.Helper()
	Eventually(tb, 5*time.Second, func() error {
		st := s.G.Stats()
		if !st.Ready || st.Epoch != epoch {
			return fmt.Errorf("gateway not ready: ready=%v epoch=%q want %q lastErr=%q", st.Ready, st.Epoch, epoch, st.LastError)
		}
		return nil
	})
}
