package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/clientip"
	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// Options configure a Gateway. Zero values take the defaults New documents.
type Options struct {
	// Redis holds the canvas stream. Required.
	Redis redis.UniversalClient
	// Canvas names the canvas whose stream is fanned out; keys come from
	// stream.KeysFor. Default canvas.DefaultName.
	Canvas string
	// InstanceID identifies this gateway across restarts. Its consumer group
	// is stream.GroupName(InstanceID), so a restarted process with the same id re-reads
	// what it had taken but not acknowledged. A name (canvas.ValidateName).
	// Required.
	InstanceID string
	// AllowedOrigins lists the browser origins ("https://example.com") that
	// may connect. Empty allows only same-origin requests (the Origin's host
	// equals the request's Host); "*" allows any. Requests without an Origin
	// header (non-browser clients) are always allowed.
	AllowedOrigins []string
	// MaxConns caps concurrent WebSocket connections; past it the upgrade is
	// refused with 503 so a load balancer moves the client elsewhere.
	// Default 10000.
	MaxConns int
	// MaxConnsPerIP caps concurrent WebSocket connections from one client
	// address (IPv6: one /64, see clientip.Key), so that one host cannot
	// take the whole MaxConns; past it the upgrade is refused with 429.
	// Default 50, room for a household or an office behind one NAT.
	MaxConnsPerIP int
	// TrustedProxies are the proxies (load balancers) whose X-Forwarded-For
	// or Forwarded header names the client for MaxConnsPerIP. Empty: the
	// connection's own address.
	TrustedProxies []netip.Prefix
	// QueueLen bounds each client's queue of undelivered events. A client
	// whose queue would overflow is degraded: its backlog is dropped and it is
	// told to resync, so a slow reader never blocks the broadcast nor grows
	// memory. Default 4096, minimum 2.
	QueueLen int
	// SendBuffer is each connection's kernel send buffer (SO_SNDBUF, bytes).
	// Without a bound the kernel grows it to megabytes, so a client that
	// stopped reading would hide thousands of events there before its queue
	// filled and it was degraded, and 10,000 such clients would pin
	// gigabytes. Default 256 KiB; negative leaves the kernel's autotuning.
	SendBuffer int
	// FlushWindow is the least time between two frames to one client:
	// events arriving within the window after a write wait for its end and
	// share one frame (fewer syscalls under load, at most this much added
	// latency), while an event reaching an idle client goes out at once.
	// Default 2ms; negative never waits.
	FlushWindow time.Duration
	// ReplayLimit is the largest gap replayed from the stream when a client
	// resumes with ?since=; past it the client resyncs from the snapshot,
	// which is cheaper than a long replay. Default 10000. The replay is read
	// from Redis a page at a time (replayPage entries), so a replaying
	// connection holds one page, not the whole gap; it stops as soon as
	// the client's queue overflows (the client is degraded and resyncs).
	ReplayLimit int
	// HeartbeatInterval is how often this instance records that it is alive
	// (and reaps dead instances' groups, and measures lag). Default 2s.
	HeartbeatInterval time.Duration
	// GroupTTL is how long an instance may go without a heartbeat before any
	// live gateway destroys its consumer group, which would otherwise pin
	// stream memory forever. Must exceed HeartbeatInterval. Default 60s.
	GroupTTL time.Duration
	// ClaimIdle is the XAUTOCLAIM visibility timeout: entries pending in this
	// instance's group for longer (a previous process under another consumer
	// name died holding them) are claimed and delivered. Default 30s.
	ClaimIdle time.Duration
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Tracer, when set, traces each entry's processing as a child of the
	// relay's publish span; Propagator reads the entry's trace context
	// (default W3C traceparent).
	Tracer     trace.TracerProvider
	Propagator propagation.TextMapPropagator
	// OnBroadcast, when set, is called with each pixel event's commit →
	// broadcast latency as the hub takes it (for the /ops dashboard's
	// window; the gateway's own histogram is in Collector).
	OnBroadcast func(time.Duration)
	// CanaryBound: when positive, Ready fails once no canary has arrived
	// for this long (counted from the start before the first one).
	CanaryBound time.Duration
	// Size is the canvas's, to refuse regions outside it (docs/protocol.md,
	// "Regions"). Default: the largest canvas (canvas.MaxSide square).
	Size canvas.Size
	// Failpoint, when set, is called at named places. For tests and drills
	// (package failpoint arms them in a binary built with -tags
	// failpoints):
	//   - "gateway:before-group-create": called as the consumer is about
	//     to join an epoch (create or reset its group), after it took the
	//     hub's position; a drill holds it there (sleep(d)) and starts an
	//     epoch meanwhile. A non-nil error fails that join, which is
	//     retried;
	//   - "gateway:keep-stale-group": a non-nil error switches the fix of
	//     issue 28 item 1 off (the epoch read apart from the group's
	//     creation, a leftover group trusted; see joinUnchecked), so the
	//     tests and drills can show they would catch its defect.
	Failpoint func(name string) error
}

const (
	writeWait    = 10 * time.Second       // deadline of every write
	pingPeriod   = 20 * time.Second       // server pings this often...
	pongWait     = 60 * time.Second       // ...and drops a client silent for this long
	closeGrace   = time.Second            // time a closing client gets to answer the close frame
	readBlock    = 500 * time.Millisecond // XREADGROUP BLOCK: also how long Run takes to notice its context ended
	maxReadCount = 512                    // XREADGROUP COUNT upper bound
	maxFrame     = 512                    // events per frame
	replayPage   = 256                    // entries read from Redis per replay step
)

// Defaults of the options that pixelflow's settings set (config takes its
// defaults from here: one default per setting).
const (
	DefaultMaxConns   = 10000
	DefaultQueueLen   = 4096
	DefaultSendBuffer = 256 << 10
	DefaultGroupTTL   = 60 * time.Second
	// MinQueueLen: a queue must hold a read batch (half a queue) and the
	// resync that replaces an overflowing one.
	MinQueueLen = 2
)

// setDefaults fills zero values.
func (o *Options) setDefaults() {
	if o.Canvas == "" {
		o.Canvas = canvas.DefaultName
	}
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = 50
	}
	if o.QueueLen == 0 {
		o.QueueLen = DefaultQueueLen
	}
	if o.Size == (canvas.Size{}) {
		o.Size = canvas.Size{Width: canvas.MaxSide, Height: canvas.MaxSide}
	}
	if o.FlushWindow == 0 {
		o.FlushWindow = 2 * time.Millisecond
	}
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	if o.SendBuffer == 0 {
		o.SendBuffer = DefaultSendBuffer
	}
	if o.ReplayLimit == 0 {
		o.ReplayLimit = 10000
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 2 * time.Second
	}
	if o.GroupTTL == 0 {
		o.GroupTTL = DefaultGroupTTL
	}
	if o.ClaimIdle == 0 {
		o.ClaimIdle = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate refuses options the gateway cannot run with (zero values stand
// for their defaults). New calls it; so does config.Parse, before anything
// opens. Redis is not checked here: it is a connection, not a setting.
func (o Options) Validate() error {
	o.setDefaults()
	c := option.Checker{Component: "gateway"}
	c.Name("Canvas", o.Canvas, canvas.ValidateName)
	c.Name("InstanceID", o.InstanceID, canvas.ValidateName)
	for _, origin := range o.AllowedOrigins {
		if origin != "*" {
			u, err := url.Parse(origin)
			c.Check(err == nil && u.Scheme != "" && u.Host != "", "AllowedOrigins", fmt.Sprintf("%q", origin), "each origin must look like http://host[:port] or be *")
		}
	}
	c.Check(o.MaxConns >= 1, "MaxConns", o.MaxConns, "must be positive")
	c.Check(o.MaxConnsPerIP >= 1, "MaxConnsPerIP", o.MaxConnsPerIP, "must be positive")
	c.Check(o.QueueLen >= MinQueueLen, "QueueLen", o.QueueLen, "must be at least %d", MinQueueLen)
	c.Check(o.ReplayLimit >= 1, "ReplayLimit", o.ReplayLimit, "must be positive")
	c.Check(o.HeartbeatInterval >= 0, "HeartbeatInterval", o.HeartbeatInterval, "must be positive")
	c.Check(o.ClaimIdle >= 0, "ClaimIdle", o.ClaimIdle, "must be positive")
	c.Check(o.GroupTTL > o.HeartbeatInterval, "GroupTTL", o.GroupTTL, "must exceed HeartbeatInterval %s", o.HeartbeatInterval)
	c.Check(o.CanaryBound >= 0, "CanaryBound", o.CanaryBound, "must not be negative")
	return c.Err()
}

// Stats is a point-in-time view of a gateway, for /metrics, readiness and
// /api/health (whose keys are lowerCamel, like every other part of it).
type Stats struct {
	Clients int `json:"clients"` // connected WebSocket clients
	// RegionClients of them receive only their regions, which hold
	// Subscriptions regions in all; TopRegions are the most held, at most
	// topRegions, most subscribers first.
	RegionClients int           `json:"regionClients"`
	Subscriptions int           `json:"subscriptions"`
	TopRegions    []RegionCount `json:"topRegions,omitempty"`
	Degraded      int64         `json:"degraded"`   // clients degraded for being slow (total)
	Resyncs       int64         `json:"resyncs"`    // resync frames queued to clients (total)
	Delivered     int64         `json:"delivered"`  // events written to client sockets, summed over clients (total)
	Broadcast     int64         `json:"broadcast"`  // stream entries handed to the hub (total)
	Duplicates    int64         `json:"duplicates"` // stream entries read again at or below LastSeq (total)
	Offered       int64         `json:"offered"`    // entries a relay in this process offered in time to be broadcast before they were read (total)
	Reaped        int64         `json:"reaped"`     // dead instances' consumer groups destroyed (total)
	LastSeq       uint64        `json:"lastSeq"`    // sequence of the last entry broadcast
	Epoch         string        `json:"epoch"`      // the stream epoch the gateway follows ("" before first contact)
	Lag           int64         `json:"lag"`        // entries in the stream not yet broadcast, as of the last heartbeat
	LastCanary    time.Time     `json:"lastCanary"` // when the last canary entry arrived (zero: none yet)
	// CanaryLatency is the last canary's commit → arrival time.
	CanaryLatency time.Duration `json:"canaryLatencyNs"`
	LastError     string        `json:"lastError"` // the last Redis error, "" once reads succeed again
	Ready         bool          `json:"ready"`     // the consumer group is being read successfully
}

// counters are the monotonic parts of Stats.
type counters struct {
	degraded, resyncs, delivered, broadcast, duplicates, offered, reaped atomic.Int64
	lag                                                                  atomic.Int64
	lastCanary                                                           atomic.Int64 // unix nanos
	canaryLatency                                                        atomic.Int64 // nanoseconds
	writers                                                              atomic.Int64 // live writer goroutines
}

// hooks are failpoints for tests; nil in production.
type hooks struct {
	// beforeBroadcast runs after entries are read, before the hub takes them.
	// A non-nil error stops Run with that error without acknowledging
	// anything: a crash between XREADGROUP and XACK.
	beforeBroadcast func(ctx context.Context, entries []stream.Entry) error
	// beforeGroupCreate runs in init just before the group is joined (a
	// test starts an epoch there), before the gateway:before-group-create
	// failpoint.
	beforeGroupCreate func()
	// afterReapRead runs in reap after the heartbeats and groups are read,
	// before anything is destroyed (a test beats another instance there).
	afterReapRead func()
	// writerExit runs as a connection's writer goroutine returns (a test
	// slows it to show that Close waits for writers).
	writerExit func()
}

// Gateway fans one canvas's stream out to WebSocket clients. See doc.go.
type Gateway struct {
	opts     Options
	log      *slog.Logger
	keys     stream.Keys
	group    string
	beatKey  string
	stream   *stream.Stream
	hub      *hub
	flushers flushers // guarded by connMu
	stats    counters
	upgrader websocket.Upgrader
	clients  clientip.Resolver
	hooks    hooks
	block    time.Duration // XREADGROUP BLOCK; tests shorten it

	tracer  trace.Tracer // nil: tracing off
	started time.Time
	// commitToBroadcast times pixel events from commit to the hub (see
	// Collector).
	commitToBroadcast prometheus.Histogram

	// offered is set by the first Offer: a relay in this process hands
	// over entries before their XADD, so the hub may be ahead of the
	// stream for the XADD's round trip (see rangeOffered).
	offered atomic.Bool
	running atomic.Bool
	ready   atomic.Bool
	lastErr atomic.Pointer[string]

	connMu sync.Mutex
	conns  map[*conn]struct{} // upgraded connections, for Close
	active int                // reserved slots: upgrading or upgraded
	perIP  map[netip.Addr]int // reserved slots by client key; never holds a zero
	closed bool
	idle   *sync.Cond // signalled when active drops to 0
}

// New validates opts, fills defaults and returns a gateway that serves
// WebSocket clients at once (ServeHTTP) and reads the stream once Run starts.
func New(opts Options) (*Gateway, error) {
	if opts.Redis == nil {
		return nil, errors.New("gateway: Options.Redis is required")
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.setDefaults()
	g := &Gateway{
		opts:    opts,
		log:     opts.Logger.With("component", "gateway", "instance", opts.InstanceID),
		keys:    stream.KeysFor(opts.Canvas),
		group:   stream.GroupName(opts.InstanceID),
		beatKey: stream.KeysFor(opts.Canvas).Gateways,
		stream:  stream.New(opts.Redis, opts.Canvas, 0),
		block:   readBlock,
		conns:   make(map[*conn]struct{}),
		perIP:   make(map[netip.Addr]int),
		clients: clientip.Resolver{Trusted: opts.TrustedProxies},
		started: time.Now(),

		commitToBroadcast: newCommitToBroadcast(),
	}
	if opts.Tracer != nil {
		g.tracer = opts.Tracer.Tracer("github.com/pixelflow/pixelflow/internal/gateway")
	}
	g.idle = sync.NewCond(&g.connMu)
	g.hub = newHub(opts.QueueLen, &g.stats)
	g.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &sync.Pool{},
		// Origins are checked before the upgrade, with a JSON answer.
		CheckOrigin: func(*http.Request) bool { return true },
		Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
			writeError(w, status, codeForStatus(status), reason.Error())
		},
	}
	return g, nil
}

// HandedOut returns the newest position this gateway's clients can hold:
// the stream's tail, or the hub's position when it is ahead of the tail in
// the same epoch, as it is for an XADD's round trip after a relay in this
// process offered entries (Offer). A snapshot cache keyed by the tail alone
// (api.TailKey) would answer a client at an offered position with a build
// older than its position: a canvas without the pixel its hello already
// covers, which the client would never receive again.
func (g *Gateway) HandedOut(ctx context.Context) (canvas.Position, error) {
	tail, err := g.stream.Tail(ctx)
	if err != nil {
		return tail, err
	}
	if pos := g.hub.position(); pos.Epoch == tail.Epoch && pos.Seq > tail.Seq {
		return pos, nil
	}
	return tail, nil
}

// Stats returns the gateway's counters and state.
func (g *Gateway) Stats() Stats {
	pos, clients := g.hub.snapshot()
	rc, subs, top := g.hub.regionCounts()
	s := Stats{
		RegionClients: rc,
		Subscriptions: subs,
		TopRegions:    top,
		Clients:       clients,
		Degraded:      g.stats.degraded.Load(),
		Resyncs:       g.stats.resyncs.Load(),
		Delivered:     g.stats.delivered.Load(),
		Broadcast:     g.stats.broadcast.Load(),
		Duplicates:    g.stats.duplicates.Load(),
		Offered:       g.stats.offered.Load(),
		Reaped:        g.stats.reaped.Load(),
		LastSeq:       pos.Seq,
		Epoch:         pos.Epoch,
		Lag:           g.stats.lag.Load(),
		Ready:         g.ready.Load(),
	}
	if n := g.stats.lastCanary.Load(); n != 0 {
		s.LastCanary = time.Unix(0, n)
		s.CanaryLatency = time.Duration(g.stats.canaryLatency.Load())
	}
	if e := g.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// CanaryCheck fails when Options.CanaryBound is set and no canary has
// arrived within it (counted from the start until the first one): the
// pipeline from the relay to this gateway is not flowing, even if every
// part answers its own health check.
func (g *Gateway) CanaryCheck(context.Context) error {
	if g.opts.CanaryBound <= 0 {
		return nil
	}
	last := g.started
	if n := g.stats.lastCanary.Load(); n != 0 {
		last = time.Unix(0, n)
	}
	if age := time.Since(last); age > g.opts.CanaryBound {
		if g.stats.lastCanary.Load() == 0 {
			return fmt.Errorf("no canary has arrived in %s since the gateway started (bound %s): is a relay running?", age.Round(time.Millisecond), g.opts.CanaryBound)
		}
		return fmt.Errorf("last canary arrived %s ago (bound %s): the pipeline is not flowing", age.Round(time.Millisecond), g.opts.CanaryBound)
	}
	return nil
}

// failpoint calls Options.Failpoint, if any.
func (g *Gateway) failpoint(name string) error {
	if g.opts.Failpoint == nil {
		return nil
	}
	return g.opts.Failpoint(name)
}

// fail records a Redis error for Stats and marks the gateway unready.
func (g *Gateway) fail(err error) {
	g.ready.Store(false)
	msg := err.Error()
	g.lastErr.Store(&msg)
}

// ok records that Redis answered again.
func (g *Gateway) ok() {
	g.ready.Store(true)
	g.lastErr.Store(nil)
}

// Run reads the stream through this instance's consumer group and feeds the
// hub, heartbeats and reaps dead instances' groups, until ctx ends (then it
// returns nil). Redis errors never end it: it backs off with jitter and
// resumes, and WebSocket clients stay connected meanwhile.
func (g *Gateway) Run(ctx context.Context) error {
	if !g.running.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice")
	}
	defer g.running.Store(false)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.maintain(ctx)
	}()
	err := g.consume(ctx)
	cancel()
	wg.Wait()
	g.ready.Store(false)
	return err
}

// Close closes every client connection with 1001 (going away), refuses new
// ones, and waits (briefly) for their handlers and writer goroutines to
// finish. Clients reconnect to
// another gateway and resume from their position.
func (g *Gateway) Close() {
	g.connMu.Lock()
	g.closed = true
	conns := make([]*conn, 0, len(g.conns))
	for c := range g.conns {
		conns = append(conns, c)
	}
	g.connMu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseGoingAway, "gateway shutting down")
	}
	done := make(chan struct{})
	go func() {
		g.connMu.Lock()
		for g.active > 0 {
			g.idle.Wait()
		}
		g.connMu.Unlock()
		close(done)
	}()
	t := time.NewTimer(closeGrace + writeWait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		g.log.Warn("connections still open after close")
	}
	g.connMu.Lock()
	g.flushers.close()
	g.connMu.Unlock()
}

// mono is the gateway's monotonic clock in nanoseconds, never 0.
func (g *Gateway) mono() int64 { return int64(time.Since(g.started)) + 1 }

// reserve takes a connection slot for client before the upgrade; it fails
// with the status to answer when the gateway is closing or full, or the
// client holds MaxConnsPerIP connections already.
func (g *Gateway) reserve(client netip.Addr) (status int, msg string) {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	switch {
	case g.closed:
		return http.StatusServiceUnavailable, "gateway is shutting down"
	case g.active >= g.opts.MaxConns:
		return http.StatusServiceUnavailable, "gateway is at its connection limit"
	case g.perIP[client] >= g.opts.MaxConnsPerIP:
		return http.StatusTooManyRequests, "too many connections from your address"
	}
	g.active++
	g.perIP[client]++
	return 0, ""
}

// attach makes an upgraded connection visible to Close; false if the gateway
// closed meanwhile.
func (g *Gateway) attach(c *conn) bool {
	g.connMu.Lock()
	defer g.connMu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

// release frees the slot reserve took for client (c may be nil when the
// upgrade failed).
func (g *Gateway) release(c *conn, client netip.Addr) {
	g.connMu.Lock()
	if c != nil {
		delete(g.conns, c)
	}
	if g.perIP[client]--; g.perIP[client] <= 0 {
		delete(g.perIP, client)
	}
	g.active--
	if g.active == 0 {
		g.idle.Broadcast()
	}
	g.connMu.Unlock()
}

// posAttr logs a stream position.
func posAttr(p canvas.Position) slog.Attr { return slog.String("position", p.String()) }
