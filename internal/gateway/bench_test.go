package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cputime"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// benchFanout is a gateway (its hub fed directly, no Redis) with n real
// loopback WebSocket clients whose readers count what they receive.
type benchFanout struct {
	g *Gateway
	// counts are per client, each on its own cache line: a shared counter
	// bumped by every client would bounce between the cores and bill the
	// benchmark's bookkeeping to the fan-out.
	counts []clientCounts
	// waiting counts clients yet to receive the current target; the last
	// one to get it signals done.
	waiting atomic.Int64
	target  atomic.Uint64
	done    chan struct{}
	seq     uint64
}

func newBenchFanout(b *testing.B, n int, window time.Duration, queueLen int) *benchFanout {
	b.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never used: Run is not started
	b.Cleanup(func() { _ = rdb.Close() })
	g, err := New(Options{Redis: rdb, InstanceID: "bench", FlushWindow: window, QueueLen: queueLen,
		MaxConns: n + 1, MaxConnsPerIP: n + 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	g.hub.pos = canvas.Position{Epoch: "bench"}
	srv := httptest.NewServer(g)
	f := &benchFanout{g: g, done: make(chan struct{}, 1), counts: make([]clientCounts, n)}
	var wg sync.WaitGroup
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	for i := range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.ReadMessage(); err != nil { // hello: registered
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts := &f.counts[i]
			seqKey := []byte(`"seq":`)
			// A lean but real client: each frame is only scanned for its
			// sequence numbers.
			readFrames(ws, func(data []byte) {
				// One forward scan counts the events and finds the last,
				// whose sequence is the frame's highest.
				n, i := 0, 0
				for {
					j := bytes.Index(data[i:], seqKey)
					if j < 0 {
						break
					}
					n++
					i += j + len(seqKey)
				}
				counts.frames.Add(1)
				counts.events.Add(int64(n))
				var seq uint64
				for ; i < len(data) && data[i] >= '0' && data[i] <= '9'; i++ {
					seq = seq*10 + uint64(data[i]-'0')
				}
				if seq == f.target.Load() && f.waiting.Add(-1) == 0 {
					f.done <- struct{}{}
				}
			})
		}()
	}
	b.Cleanup(func() {
		g.Close()
		srv.Close()
		wg.Wait()
	})
	return f
}

// clientCounts is what one client received, padded to a cache line.
type clientCounts struct {
	frames, events atomic.Int64
	_              [48]byte
}

// received sums the frames and events all clients have read.
func (f *benchFanout) received() (frames, events int64) {
	for i := range f.counts {
		frames += f.counts[i].frames.Load()
		events += f.counts[i].events.Load()
	}
	return frames, events
}

// send broadcasts count single-event batches and arms the wait for the last.
func (f *benchFanout) send(count, clients int) {
	f.target.Store(f.seq + uint64(count))
	f.waiting.Store(int64(clients))
	for range count {
		f.seq++
		e := stream.Entry{Event: canvas.Event{ID: "ev", Kind: canvas.KindPixel, GX: 12, GY: 34,
			Color: 0x336699, Version: int64(f.seq), CommittedAt: time.Now(), Epoch: "bench", Seq: f.seq}, PublishedAt: time.Now()}
		f.g.hub.broadcast(e.Epoch, e.Seq, []stream.Entry{e})
	}
}

// BenchmarkBroadcast1000 is the fan-out of one event to 1,000 clients over
// real loopback WebSockets, measured until every client has read it: ns/op
// is the cost of delivering one event to all. "window=none" writes at once;
// "window=2ms" is the default FlushWindow, whose wait dominates a lone event.
func BenchmarkBroadcast1000(b *testing.B) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"window=none", -1}, {"window=2ms", 2 * time.Millisecond}} {
		b.Run(tc.name, func(b *testing.B) {
			const clients = 1000
			f := newBenchFanout(b, clients, tc.window, 4096)
			cpu := cputime.Process()
			for b.Loop() {
				f.send(1, clients)
				<-f.done
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(clients)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}

// BenchmarkFrames is sustained throughput: events broadcast back to back to
// 10 clients; the writers pack whatever queued into frames. It reports
// frames/s and events/s received over all clients, and events per frame.
func BenchmarkFrames(b *testing.B) {
	for _, tc := range []struct {
		name   string
		window time.Duration
	}{{"window=none", -1}, {"window=2ms", 2 * time.Millisecond}} {
		b.Run(tc.name, func(b *testing.B) {
			const clients, burst = 10, 1000
			f := newBenchFanout(b, clients, tc.window, 1<<20)
			cpu := cputime.Process()
			for b.Loop() {
				f.send(burst, clients)
				<-f.done
			}
			used := reportCPU(b, cpu)
			if d := f.g.Stats().Degraded; d != 0 {
				b.Fatalf("%d clients degraded", d)
			}
			secs := b.Elapsed().Seconds()
			nf, ne := f.received()
			frames, events := float64(nf), float64(ne)
			b.ReportMetric(frames/secs, "frames/s")
			// Frames per CPU-second: frames/s per core, whatever else runs.
			b.ReportMetric(frames/used.Seconds(), "frames/cpu-s")
			b.ReportMetric(events/secs, "events/s")
			b.ReportMetric(events/frames, "events/frame")
		})
	}
}

// reportCPU reports the process's CPU time (gateway and clients together)
// per operation since start, the figure that other load on a shared
// machine disturbs least, and returns the total.
func reportCPU(b *testing.B, start time.Duration) time.Duration {
	used := cputime.Process() - start
	b.ReportMetric(float64(used)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	return used
}

// BenchmarkLoopbackFloor1000 is the floor under BenchmarkBroadcast1000: the
// same fan-out of one frame-sized message to 1,000 loopback TCP connections,
// with a goroutine per connection on each side as the gateway and its
// clients have, but no WebSocket, JSON or queue. The gateway cannot beat it;
// the difference is what the gateway itself costs.
func BenchmarkLoopbackFloor1000(b *testing.B) {
	const clients = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	msg := bytes.Repeat([]byte("x"), 250) // about one events frame of one event
	var (
		waiting atomic.Int64
		done    = make(chan struct{}, 1)
		wg      sync.WaitGroup
		wakes   []chan struct{}
	)
	defer wg.Wait()
	for range clients {
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		sc, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		defer sc.Close()
		wake := make(chan struct{}, 1)
		wakes = append(wakes, wake)
		wg.Add(2)
		go func() { // the connection's writer
			defer wg.Done()
			for range wake {
				if _, err := sc.Write(msg); err != nil {
					return
				}
			}
		}()
		go func() { // the client
			defer wg.Done()
			buf := make([]byte, 4096)
			got := 0
			for {
				n, err := cc.Read(buf)
				if err != nil {
					return
				}
				if got += n; got >= len(msg) {
					got -= len(msg)
					if waiting.Add(-1) == 0 {
						done <- struct{}{}
					}
				}
			}
		}()
	}
	defer func() {
		for _, w := range wakes {
			close(w)
		}
	}()
	cpu := cputime.Process()
	for b.Loop() {
		waiting.Store(clients)
		for _, w := range wakes {
			w <- struct{}{}
		}
		<-done
	}
	reportCPU(b, cpu)
}

// TestMain doubles as the client process of BenchmarkServerCPU: with
// PF_BENCH_CLIENTS set it only runs those clients.
func TestMain(m *testing.M) {
	if spec := os.Getenv("PF_BENCH_CLIENTS"); spec != "" {
		os.Exit(runBenchClients(spec))
	}
	os.Exit(m.Run())
}

// runBenchClients connects n clients to url ("n url"), reports "ready" on
// stdout once each has its hello, and reads and discards until the
// connections end.
func runBenchClients(spec string) int {
	nStr, url, _ := strings.Cut(spec, " ")
	n, err := strconv.Atoi(nStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad PF_BENCH_CLIENTS:", spec)
		return 2
	}
	var wg sync.WaitGroup
	for range n {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if _, _, err := ws.ReadMessage(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readFrames(ws, func([]byte) {})
		}()
	}
	fmt.Println("ready")
	wg.Wait()
	return 0
}

// BenchmarkServerCPU is the gateway's own CPU per delivery: n clients in a
// separate process (this test binary again), so the figure holds only the
// gateway's side — the hub, framing, and the write system calls with the
// loopback's kernel work they carry. Each op broadcasts one lone event and
// waits until it has been written to every client (Stats().Delivered), as
// at a light, steady write rate. cpu-µs/delivery is the figure to compare;
// it depends far less on other load than the wall time does.
func BenchmarkServerCPU(b *testing.B) {
	for _, clients := range []int{200, 1000} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never used: Run is not started
			b.Cleanup(func() { _ = rdb.Close() })
			g, err := New(Options{Redis: rdb, InstanceID: "bench", FlushWindow: -1,
				MaxConns: clients + 1, MaxConnsPerIP: clients + 1, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			g.hub.pos = canvas.Position{Epoch: "bench"}
			srv := httptest.NewServer(g)
			defer srv.Close()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "PF_BENCH_CLIENTS="+strconv.Itoa(clients)+" ws"+strings.TrimPrefix(srv.URL, "http"))
			cmd.Stderr = os.Stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			defer func() { g.Close(); _ = cmd.Wait() }()
			if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
				b.Fatalf("client process: %q, %v", line, err)
			}
			var seq uint64
			cpu := cputime.Process()
			for b.Loop() {
				seq++
				want := g.Stats().Delivered + int64(clients)
				e := stream.Entry{Event: canvas.Event{ID: "ev", Kind: canvas.KindPixel, GX: 12, GY: 34,
					Color: 0x336699, Version: int64(seq), CommittedAt: time.Now(), Epoch: "bench", Seq: seq}, PublishedAt: time.Now()}
				g.hub.broadcast(e.Epoch, e.Seq, []stream.Entry{e})
				for g.Stats().Delivered < want {
					time.Sleep(50 * time.Microsecond)
				}
			}
			used := cputime.Process() - cpu
			b.ReportMetric(float64(used.Microseconds())/float64(b.N*clients), "cpu-µs/delivery")
		})
	}
}

// readFrames reads every frame of ws in full into one reused buffer
// (ReadMessage would allocate one per frame) and hands it to each, until the
// connection fails.
func readFrames(ws *websocket.Conn, each func(data []byte)) {
	var buf bytes.Buffer
	for {
		_, r, err := ws.NextReader()
		if err != nil {
			return
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return
		}
		each(buf.Bytes())
	}
}
