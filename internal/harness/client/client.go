// Package client is pixelflow's Go WebSocket client, the one the end-to-end
// suites, the chaos drills and the load test run by the hundreds. It speaks
// the protocol in docs/protocol.md exactly as a browser should: position
// first (the hello), then the snapshot; events applied only when their
// version is newer; every event's sequence checked for continuity, a gap
// answered by reconnecting with ?since= (a replay) rather than by silence;
// a resync answered by reloading the snapshot, which replaces the canvas.
//
// Why replace: versions are only comparable within one history of the
// database. After a DATA_DIR=memory restart, a restore from backup or a
// MongoDB rollback they start over or go back, and a client merging by
// version would keep its newer-numbered, older pixels forever. A snapshot is
// the database's whole canvas, so it replaces everything the client held,
// and the events received since the snapshot was asked for (which the
// snapshot may predate) are applied on top of it again, by version.
//
// Concurrency: Run owns the connection and reads it on its own goroutine; a
// second goroutine loads snapshots when asked (coalescing requests), so a
// slow snapshot never stops the reading. Both change one canvas under one
// mutex: events received while a snapshot is awaited are applied at once and
// also kept, and the loaded snapshot replaces the canvas and has those
// events applied again on top, so their order does not matter. Every other
// method may be called from any goroutine.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/backoff"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// Options configure a Client.
type Options struct {
	// BaseURL is a gateway's http://host:port (it serves /ws). Required.
	BaseURL string
	// Alternates are other gateways' base URLs. After a connection ends
	// with an error the client moves to the next URL in turn, so when a
	// gateway dies its clients resume on another one (positions are the
	// stream's, valid on every gateway).
	Alternates []string
	// SnapshotURL is the http base URL serving GET /api/canvas. Default
	// BaseURL (a `serve` process has both).
	SnapshotURL string
	// Name labels the client in logs.
	Name string
	// Fields are the optional event fields to ask for (protocol.FieldID,
	// FieldCommittedAt, FieldPublishedAt): events carry only what applying
	// them needs unless asked, so a test that matches ids or measures
	// latency names what it reads. JSON only.
	Fields []string
	// Binary speaks the binary subprotocol (protocol.SubprotocolBinary),
	// as the browser page does; it carries no optional fields, so it
	// cannot be combined with Fields.
	Binary bool
	// OnEvent, when set, is called for every event received (duplicates
	// and canaries included), in order, on the reading goroutine: a slow
	// hook makes a slow client.
	OnEvent func(Received)
	// DiscardHistory keeps History empty: a load test that counts through
	// OnEvent need not hold every event of every client in memory (and
	// make its garbage collector compete with what it measures).
	DiscardHistory bool
	// OnSnapshot, when set, is called with every snapshot loaded (each
	// painted pixel as the snapshot had it), after it was merged, on the
	// snapshot goroutine. A history checker needs it: after a resync the
	// snapshot, not events, is how the client learned of some writes.
	OnSnapshot func(map[[2]int]CanvasPixel)
	// Regional connects for regions only (docs/protocol.md, "Regions"):
	// ?regions= names Regions (none yet if empty), and Subscribe,
	// Unsubscribe and SubscribeAll change them while connected. Set by a
	// non-empty Regions too. JSON only (not with Binary).
	Regional bool
	Regions  []canvas.Region
	// OnRegions, when set, is told every change of what the client holds,
	// in order with OnEvent (see RegionChange): a history checker judges
	// region clients by it.
	OnRegions func(RegionChange)
	// HTTPClient loads snapshots. Default: a client with a 10s timeout.
	HTTPClient *http.Client
	// Dialer opens WebSocket connections. Default: a dialer with a 10s
	// handshake timeout.
	Dialer *websocket.Dialer
	// Logger. Default slog.Default().
	Logger *slog.Logger
}

// Received is one event as the client received it.
type Received struct {
	Event      canvas.Event // Seq and Epoch are the stream position it arrived at
	ReceivedAt time.Time
	Epoch      string
	// Dup is set when the event's sequence was already covered (a replay
	// overlapping what the client had, or a gateway re-delivery).
	Dup bool
	// PublishedAt is when the relay published it (zero unless asked for
	// with Options.Fields, or not known).
	PublishedAt time.Time
}

// RegionChange is one step of a client's subscriptions, as OnRegions
// reports it.
type RegionChange struct {
	Kind RegionChangeKind
	// All and Regions: for RegionsSent what the frame asked (to add, or
	// remove with Unsubscribe); otherwise everything the connection holds
	// from Position on.
	All         bool
	Regions     []canvas.Region
	Unsubscribe bool
	// Position: for RegionsAcked the acknowledgement's; for
	// RegionsConnected the hello's (with Resumed, and Since, the position
	// the client resumed from, zero without one); for RegionsResynced the
	// resync's.
	Position canvas.Position
	Resumed  bool
	Since    canvas.Position
	At       time.Time
}

// RegionChangeKind says what a RegionChange reports. Its values are
// history.SubscriptionKind's: cluster.Subscription converts by value.
type RegionChangeKind int

const (
	RegionsSent      RegionChangeKind = iota // a subscribe or unsubscribe was written
	RegionsAcked                             // its subscribed acknowledgement arrived
	RegionsConnected                         // a hello: the connection holds what its URL named
	RegionsResynced                          // a resync: the same regions, from a new position
)

// CanvasPixel is one painted pixel of the client's canvas.
type CanvasPixel struct {
	Color   canvas.Color
	Version int64
}

// ClientStats counts what happened to a client.
type ClientStats struct {
	Connects   int64 // WebSocket connections opened
	Resumes    int64 // hellos that accepted the client's ?since= position
	Resyncs    int64 // resync frames received
	Received   int64 // events received (duplicates and canaries included)
	Duplicates int64 // events at or below the position when they arrived
	Gaps       int64 // sequence gaps detected (each caused a reconnect)
	Canaries   int64 // canary events received
	Snapshots  int64 // snapshots loaded
	Frames     int64 // WebSocket messages received (every type)
	Bytes      int64 // their payload bytes
	// SnapshotPending is set while a requested snapshot is not loaded yet.
	SnapshotPending bool
	// LastRTT is the round trip of the last Ping answered.
	LastRTT time.Duration
}

// Client follows one canvas through gateways. See the package comment.
type Client struct {
	opts     Options
	log      *slog.Logger
	http     *http.Client
	dialer   *websocket.Dialer
	snapReq  chan struct{}
	running  atomic.Bool
	pingSent atomic.Int64 // unix nanos of the last Ping
	frames   atomic.Int64 // ClientStats.Frames, counted without the lock
	bytes    atomic.Int64 // ClientStats.Bytes

	writeMu sync.Mutex // serializes Ping's writes

	mu       sync.Mutex
	pos      canvas.Position
	havePos  bool // pos is a position a gateway can resume from
	pixels   map[[2]int]CanvasPixel
	history  []Received
	stats    ClientStats
	ws       *websocket.Conn
	resume   chan struct{} // non-nil while paused; closed on resume
	snapWant uint64        // snapshot requests made
	snapDone uint64        // requests satisfied by a loaded snapshot
	// holding is set from a snapshot request (hello or resync) until a
	// snapshot asked for at or after it has loaded; the pixel events
	// received meanwhile are kept in held, to be applied again on top of
	// the snapshot that replaces the canvas.
	holding bool
	held    []heldEvent

	// Regions. regional: the client holds want only (else the whole
	// canvas). ops are the subscribes and unsubscribes sent on this
	// connection and not yet acknowledged, in order; carry are the
	// regions (or all, carryAll) added but not loaded when a connection
	// ended, to load once the next one says hello. pendAll and pendRegions
	// are the snapshot loads asked for and not started.
	regional    bool
	want        map[canvas.Region]bool
	ops         []subOp
	carry       map[canvas.Region]bool
	carryAll    bool
	ackAll      bool
	acked       []canvas.Region
	pendAll     bool
	pendRegions map[canvas.Region]bool
	// live is set once the connection's hello was taken and what changed
	// since its URL was written was sent (reconcile): only then do
	// changes go out as frames. Until then they change what the client
	// holds, and reconcile sends the difference.
	live bool
}

// subOp is one subscribe or unsubscribe awaiting its acknowledgement.
type subOp struct {
	all   bool            // subscribe to the whole canvas (from regions)
	added []canvas.Region // regions it made visible: loaded on the ack
	unsub bool
}

// maxHeld bounds the events kept while a snapshot is awaited (the snapshot
// endpoint may be down for long while events flow). Past it the client
// forgets them and asks for a newer snapshot, which holds them all.
const maxHeld = 1 << 16

// heldEvent is a pixel event received while a snapshot was awaited, with
// the stream position it arrived at.
type heldEvent struct {
	epoch   string
	seq     uint64
	gx, gy  int
	color   canvas.Color
	version int64
}

// New returns a client; Run connects it.
func New(opts Options) *Client {
	if opts.SnapshotURL == "" {
		opts.SnapshotURL = opts.BaseURL
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Dialer == nil {
		opts.Dialer = &websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Binary {
		d := *opts.Dialer // the caller's dialer stays as it was
		d.Subprotocols = []string{protocol.SubprotocolBinary}
		opts.Dialer = &d
	}
	c := &Client{
		opts:        opts,
		log:         opts.Logger.With("component", "client", "name", opts.Name),
		http:        opts.HTTPClient,
		dialer:      opts.Dialer,
		snapReq:     make(chan struct{}, 1),
		pixels:      make(map[[2]int]CanvasPixel),
		want:        map[canvas.Region]bool{},
		carry:       map[canvas.Region]bool{},
		pendRegions: map[canvas.Region]bool{},
		ackAll:      true,
	}
	if opts.Regional || len(opts.Regions) > 0 {
		c.regional = true
		for _, r := range opts.Regions {
			c.want[r] = true
		}
	}
	return c
}

const (
	readTimeout  = 90 * time.Second // the gateway pings every 20s
	maxFrameSize = 64 << 20
	minBackoff   = 50 * time.Millisecond
	maxBackoff   = 2 * time.Second
)

// errGap ends a session whose stream skipped a sequence number; Run
// reconnects at once with ?since= so the gateway replays the gap.
var errGap = errors.New("sequence gap")

// Run connects, follows the stream and reconnects (with backoff, resuming
// from its position) until ctx ends; then it returns nil. It returns an
// error only for a BaseURL it cannot use.
func (c *Client) Run(ctx context.Context) error {
	if c.opts.Binary && len(c.opts.Fields) > 0 {
		return errors.New("client: Fields need the JSON protocol; the binary one carries none")
	}
	if c.opts.Binary && c.regional {
		return errors.New("client: regions need the JSON protocol")
	}
	if len(c.opts.Regions) > canvas.MaxRegions {
		return fmt.Errorf("client: %d regions, at most %d", len(c.opts.Regions), canvas.MaxRegions)
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("client: Run called twice")
	}
	defer c.running.Store(false)
	var wsURLs []string
	for _, base := range append([]string{c.opts.BaseURL}, c.opts.Alternates...) {
		u, err := endpoint(base, "/ws", true)
		if err != nil {
			return err
		}
		wsURLs = append(wsURLs, u)
	}
	snapURL, err := endpoint(c.opts.SnapshotURL, "/api/canvas", false)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.snapshotLoop(ctx, snapURL)
	}()
	defer wg.Wait()
	var bo backoff.Backoff
	at := 0
	for {
		hello, err := c.session(ctx, wsURLs[at])
		if ctx.Err() != nil {
			return nil
		}
		if hello {
			bo.Reset()
		}
		if errors.Is(err, errGap) {
			c.log.Warn("sequence gap; reconnecting to replay it", "position", c.Position().String())
			continue
		}
		at = (at + 1) % len(wsURLs)
		d := bo.Next(minBackoff, maxBackoff)
		c.log.Debug("connection ended; reconnecting", "err", err, "in", d)
		if backoff.Sleep(ctx, d); ctx.Err() != nil {
			return nil
		}
	}
}

// endpoint turns a base URL into the URL of path, as ws:// when ws is set.
func endpoint(base, path string, ws bool) (string, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("client: base URL %q is not an absolute http URL", base)
	}
	if ws {
		switch u.Scheme {
		case "http", "ws":
			u.Scheme = "ws"
		case "https", "wss":
			u.Scheme = "wss"
		default:
			return "", fmt.Errorf("client: base URL %q: scheme must be http or https", base)
		}
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawQuery = ""
	return u.String(), nil
}

// session runs one connection until it fails; hello reports whether the
// gateway greeted it (then the backoff starts over).
func (c *Client) session(ctx context.Context, wsURL string) (hello bool, err error) {
	c.mu.Lock()
	since, resuming := c.pos, c.havePos
	// What the last connection added and did not load yet is loaded once
	// this one says hello (a resumed hello replays only what follows).
	for _, op := range c.ops {
		c.carryAll = c.carryAll || op.all
		for _, r := range op.added {
			c.carry[r] = true
		}
	}
	c.ops = nil
	c.live = false
	regional, regions := c.regional, c.wantListLocked()
	c.mu.Unlock()
	q := url.Values{}
	if resuming {
		q.Set("since", since.String())
	}
	if regional {
		q.Set("regions", joinRegions(regions))
	}
	if len(c.opts.Fields) > 0 {
		q.Set("fields", strings.Join(c.opts.Fields, ","))
	}
	if len(q) > 0 {
		wsURL += "?" + q.Encode()
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, resp, err := c.dialer.DialContext(dctx, wsURL, nil)
	cancel()
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // the handshake's answer: only its status is read
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusBadRequest && resuming {
			// The gateway refuses our position outright: start afresh.
			c.mu.Lock()
			c.havePos = false
			c.mu.Unlock()
		}
		return false, fmt.Errorf("dial: %w", err)
	}
	c.mu.Lock()
	c.ws = ws
	c.stats.Connects++
	c.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { _ = ws.NetConn().Close() })
	defer func() {
		stop()
		_ = ws.Close()
		c.mu.Lock()
		if c.ws == ws {
			c.ws = nil
		}
		c.live = false
		c.mu.Unlock()
	}()
	ws.SetReadLimit(maxFrameSize)
	for {
		if err := c.waitUnpaused(ctx); err != nil {
			return hello, err
		}
		_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
		mt, data, err := ws.ReadMessage()
		if err != nil {
			return hello, err
		}
		now := time.Now()
		c.frames.Add(1)
		c.bytes.Add(int64(len(data)))
		f, err := decodeFrame(mt, data, ws.Subprotocol())
		if err != nil {
			return hello, err
		}
		switch f.Type {
		case protocol.TypeHello:
			hello = true
			c.onHello(f, resuming, since, regional, regions)
			c.reconcile(ws, regional, regions)
		case protocol.TypeEvents:
			if !hello {
				return hello, errors.New("events before hello")
			}
			if err := c.onEvents(f.From, f.Events, now); err != nil {
				return hello, err
			}
		case protocol.TypeResync:
			c.onResync(f)
		case protocol.TypeSubscribed:
			c.onSubscribed(f, now)
		case protocol.TypePong:
			if sent := c.pingSent.Load(); sent != 0 {
				c.mu.Lock()
				c.stats.LastRTT = now.Sub(time.Unix(0, sent))
				c.mu.Unlock()
			}
		}
	}
}

// decodeFrame decodes one server message: JSON text, or a binary message
// when the binary subprotocol was negotiated. A binary message on a JSON
// connection (or text on a binary one) is the gateway breaking the
// protocol: the session ends, and the reconnect starts clean.
func decodeFrame(mt int, data []byte, subprotocol string) (protocol.ServerFrame, error) {
	bin := subprotocol == protocol.SubprotocolBinary
	switch {
	case mt == websocket.BinaryMessage && bin:
		f, err := protocol.DecodeBinary(data)
		if err != nil {
			return f, fmt.Errorf("bad frame from gateway: %w", err)
		}
		return f, nil
	case mt == websocket.TextMessage && !bin:
		var f protocol.ServerFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return f, fmt.Errorf("bad frame from gateway: %w", err)
		}
		return f, nil
	}
	return protocol.ServerFrame{}, fmt.Errorf("bad frame from gateway: message type %d on a connection with subprotocol %q", mt, subprotocol)
}

// onHello adopts the gateway's position unless it accepted ours, in which
// case the replay of the gap follows and no snapshot is needed.
// urlRegional and urlRegions are what the connection's URL named: what it
// holds, whatever changed since (reconcile sends that).
func (c *Client) onHello(f protocol.ServerFrame, resuming bool, since canvas.Position, urlRegional bool, urlRegions []canvas.Region) {
	c.mu.Lock()
	ch := RegionChange{Kind: RegionsConnected, All: !urlRegional, Regions: slices.Clone(urlRegions),
		Position: canvas.Position{Epoch: f.Epoch, Seq: f.Seq}, At: time.Now()}
	if resuming {
		ch.Since = since
	}
	c.ackAll, c.acked = ch.All, ch.Regions
	if resuming && f.Resumed && f.Epoch == since.Epoch {
		c.stats.Resumes++
		ch.Resumed = true
		// The gap is replayed for what the URL named; what the last
		// connection added without loading it is loaded now.
		switch {
		case c.carryAll && !c.regional:
			c.requestSnapshotLocked()
		case c.regional && len(c.carry) > 0:
			var adds []canvas.Region
			for r := range c.carry {
				// Regions the URL did not name are loaded on the
				// acknowledgement of reconcile's subscribe.
				if c.want[r] && (!urlRegional || slices.Contains(urlRegions, r)) {
					adds = append(adds, r)
				}
			}
			if len(adds) > 0 {
				c.requestRegionsLocked(adds, false)
			}
		}
	} else {
		c.pos = canvas.Position{Epoch: f.Epoch, Seq: f.Seq}
		c.havePos = f.Epoch != ""
		c.reloadLocked()
	}
	clear(c.carry)
	c.carryAll = false
	c.mu.Unlock()
	c.reportRegions(ch)
}

// reconcile sends, once a connection said hello, what changed in what the
// client holds since the connection's URL was written (regions or all),
// and from then on changes go out as frames. The hello's replay and
// snapshot cover what the URL named; regions it did not name are loaded
// on their acknowledgement like any subscribe's.
func (c *Client) reconcile(ws *websocket.Conn, urlRegional bool, urlRegions []canvas.Region) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	var msgs []protocol.Subscribe
	var ops []subOp
	url := map[canvas.Region]bool{}
	for _, r := range urlRegions {
		url[r] = true
	}
	want := c.wantListLocked()
	switch {
	case urlRegional && !c.regional:
		msgs, ops = append(msgs, protocol.Subscribe{Type: protocol.TypeSubscribe, All: true}), append(ops, subOp{all: true})
	case !urlRegional && c.regional && len(want) > 0:
		// From the whole canvas: its replay or snapshot covers these.
		msgs, ops = append(msgs, protocol.Subscribe{Type: protocol.TypeSubscribe, Regions: want}), append(ops, subOp{})
	case urlRegional && c.regional:
		var adds, removes []canvas.Region
		for _, r := range want {
			if !url[r] {
				adds = append(adds, r)
			}
		}
		for _, r := range urlRegions {
			if !c.want[r] {
				removes = append(removes, r)
			}
		}
		if len(removes) > 0 {
			msgs, ops = append(msgs, protocol.Subscribe{Type: protocol.TypeUnsubscribe, Regions: removes}), append(ops, subOp{unsub: true})
		}
		if len(adds) > 0 {
			msgs, ops = append(msgs, protocol.Subscribe{Type: protocol.TypeSubscribe, Regions: adds}), append(ops, subOp{added: adds})
			c.holding = true
		}
	}
	if ops != nil && ops[len(ops)-1].all {
		c.holding = true
	}
	c.ops = append(c.ops, ops...)
	c.live = c.ws == ws
	c.mu.Unlock()
	for _, m := range msgs {
		c.reportRegions(RegionChange{Kind: RegionsSent, All: m.All, Regions: slices.Clone(m.Regions), Unsubscribe: m.Type == protocol.TypeUnsubscribe, At: time.Now()})
		if err := c.write(context.Background(), ws, m); err != nil {
			return
		}
	}
}

// write sends one subscribe or unsubscribe frame; the caller holds writeMu.
func (c *Client) write(ctx context.Context, ws *websocket.Conn, msg protocol.Subscribe) error {
	b, _ := json.Marshal(msg)
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = ws.SetWriteDeadline(deadline)
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		// The connection is ending: the next one's URL names the regions,
		// and what this one added is loaded after its hello.
		return fmt.Errorf("client: %s: %w", msg.Type, err)
	}
	return nil
}

// reloadLocked loads everything the client holds again (a hello without
// resumed, a resync): the whole canvas, or every region it holds.
func (c *Client) reloadLocked() {
	if !c.regional {
		c.requestSnapshotLocked()
		return
	}
	c.requestRegionsLocked(c.wantListLocked(), true)
}

func (c *Client) reportRegions(ch RegionChange) {
	if c.opts.OnRegions != nil {
		c.opts.OnRegions(ch)
	}
}

// onResync moves to the gateway's position and reloads the snapshot: the
// events before it cannot be delivered, the events after it will be.
func (c *Client) onResync(f protocol.ServerFrame) {
	c.mu.Lock()
	c.stats.Resyncs++
	c.pos = canvas.Position{Epoch: f.Epoch, Seq: f.Seq}
	c.havePos = f.Epoch != ""
	c.log.Debug("resync", "reason", f.Reason, "position", c.pos.String())
	c.reloadLocked()
	ch := RegionChange{Kind: RegionsResynced, All: !c.regional, Regions: c.wantListLocked(), Position: c.pos, At: time.Now()}
	c.mu.Unlock()
	c.reportRegions(ch)
}

// onSubscribed takes the acknowledgement of the oldest subscribe or
// unsubscribe sent: from its position every event of the regions it names
// is delivered, so the regions that subscribe made visible are loaded now
// (their snapshot is at least as new as the acknowledgement).
func (c *Client) onSubscribed(f protocol.ServerFrame, now time.Time) {
	c.mu.Lock()
	c.ackAll, c.acked = f.All, slices.Clone(f.Regions)
	if len(c.ops) == 0 {
		c.mu.Unlock()
		c.log.Warn("subscribed without a subscribe awaiting it", "position", canvas.Position{Epoch: f.Epoch, Seq: f.Seq}.String())
		return
	}
	op := c.ops[0]
	c.ops = c.ops[1:]
	switch {
	case op.all && !c.regional:
		c.requestSnapshotLocked()
	case len(op.added) > 0 && c.regional:
		var adds []canvas.Region
		for _, r := range op.added {
			if c.want[r] {
				adds = append(adds, r)
			}
		}
		if len(adds) > 0 {
			c.requestRegionsLocked(adds, false)
		}
	}
	c.stopHoldingLocked()
	ch := RegionChange{Kind: RegionsAcked, All: f.All, Regions: slices.Clone(f.Regions),
		Position: canvas.Position{Epoch: f.Epoch, Seq: f.Seq}, At: now}
	c.mu.Unlock()
	c.reportRegions(ch)
}

// Subscribe adds regions (docs/protocol.md, "Regions"). A client holding
// the whole canvas holds only these from then on. Regions held already
// are not asked for again; with nothing new, nothing is sent. Not
// connected, the next connection's URL names them.
func (c *Client) Subscribe(ctx context.Context, regions ...canvas.Region) error {
	return c.change(ctx, protocol.TypeSubscribe, false, regions)
}

// Unsubscribe removes regions; their pixels leave the client's canvas at
// once (events of them that still arrive before the acknowledgement are
// not applied).
func (c *Client) Unsubscribe(ctx context.Context, regions ...canvas.Region) error {
	return c.change(ctx, protocol.TypeUnsubscribe, false, regions)
}

// SubscribeAll goes back to the whole canvas, loaded again once the
// acknowledgement arrives.
func (c *Client) SubscribeAll(ctx context.Context) error {
	return c.change(ctx, protocol.TypeSubscribe, true, nil)
}

func (c *Client) change(ctx context.Context, typ string, all bool, regions []canvas.Region) error {
	if c.opts.Binary {
		return errors.New("client: regions need the JSON protocol")
	}
	c.writeMu.Lock() // frames go out in the order ops are queued
	defer c.writeMu.Unlock()
	c.mu.Lock()
	msg := protocol.Subscribe{Type: typ, All: all}
	op := subOp{all: all, unsub: typ == protocol.TypeUnsubscribe}
	switch {
	case all:
		if !c.regional {
			c.mu.Unlock()
			return nil
		}
		c.regional = false
		clear(c.want)
	case op.unsub:
		if !c.regional {
			c.mu.Unlock()
			return errors.New("client: unsubscribe from the whole canvas: subscribe to the regions to keep instead")
		}
		for _, r := range regions {
			if c.want[r] && !slices.Contains(msg.Regions, r) {
				msg.Regions = append(msg.Regions, r)
			}
		}
		for _, r := range msg.Regions {
			delete(c.want, r)
		}
	default:
		held := len(c.want)
		if !c.regional {
			held = 0
		}
		for _, r := range regions {
			if (!c.regional || !c.want[r]) && !slices.Contains(msg.Regions, r) {
				msg.Regions = append(msg.Regions, r)
			}
		}
		if held+len(msg.Regions) > canvas.MaxRegions {
			c.mu.Unlock()
			return fmt.Errorf("client: %d regions, at most %d: subscribe to the whole canvas instead", held+len(msg.Regions), canvas.MaxRegions)
		}
		if len(msg.Regions) > 0 {
			if c.regional {
				op.added = msg.Regions
			} else {
				// From the whole canvas to these: all of them were
				// visible, nothing to load.
				c.regional = true
				clear(c.want)
			}
		}
		for _, r := range msg.Regions {
			c.want[r] = true
		}
	}
	if !all && len(msg.Regions) == 0 {
		c.mu.Unlock()
		return nil // nothing to change (from the whole canvas: name a region)
	}
	slices.Sort(msg.Regions)
	if c.regional {
		maps.DeleteFunc(c.pixels, func(p [2]int, _ CanvasPixel) bool { return !c.visibleLocked(p[0], p[1]) })
	}
	if op.all || len(op.added) > 0 {
		c.holding = true // keep the new regions' events from now on
	}
	ws := c.ws
	if ws == nil || !c.live {
		// Not connected, or connecting: the next URL names what the
		// client holds, or reconcile sends it after the hello.
		c.carryAll = c.carryAll || op.all
		for _, r := range op.added {
			c.carry[r] = true
		}
		c.mu.Unlock()
		return nil
	}
	c.ops = append(c.ops, op)
	ch := RegionChange{Kind: RegionsSent, All: all, Regions: slices.Clone(msg.Regions), Unsubscribe: op.unsub, At: time.Now()}
	c.mu.Unlock()
	c.reportRegions(ch)
	return c.write(ctx, ws, msg)
}

// wantListLocked is the sorted list of the regions the client holds.
func (c *Client) wantListLocked() []canvas.Region {
	out := slices.Collect(maps.Keys(c.want))
	slices.Sort(out)
	return out
}

// joinRegions writes ids as the regions= list.
func joinRegions(regions []canvas.Region) string {
	b := make([]byte, 0, len(regions)*5)
	for i, r := range regions {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(r), 10)
	}
	return string(b)
}

// Regions reports what the client holds: the whole canvas (all), or the
// regions listed; Canvas holds only their pixels.
func (c *Client) Regions() (all bool, regions []canvas.Region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.regional, c.wantListLocked()
}

// Acknowledged is what the last hello or subscribed frame said the
// connection holds.
func (c *Client) Acknowledged() (all bool, regions []canvas.Region) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ackAll, slices.Clone(c.acked)
}

// onEvents checks continuity and applies each event by version. from is
// the frame's "from" (0: none): a filtered frame holds every event of the
// connection's regions from it through its last event, so it is
// continuous when from is at most the position plus one.
func (c *Client) onEvents(from uint64, evs []protocol.Event, now time.Time) error {
	recs := make([]Received, 0, len(evs))
	var gap error
	c.mu.Lock()
	last := c.pos.Seq
	if from != 0 && from > last+1 {
		c.stats.Gaps++
		c.mu.Unlock()
		return fmt.Errorf("%w: a frame from %d after %d", errGap, from, last)
	}
	for _, w := range evs {
		var col canvas.Color
		if w.Kind != protocol.KindCanary { // a canary carries no pixel
			var err error
			if col, err = canvas.ParseColor(w.Color); err != nil {
				c.mu.Unlock()
				return fmt.Errorf("event %d: %w", w.Seq, err)
			}
		}
		r := Received{
			Event: canvas.Event{
				ID: w.ID, Kind: canvas.Kind(w.Kind), GX: w.GX, GY: w.GY, Color: col,
				Version: w.Version, CommittedAt: w.CommittedAt, Epoch: c.pos.Epoch, Seq: w.Seq,
			},
			ReceivedAt: now, Epoch: c.pos.Epoch, PublishedAt: w.PublishedAt,
		}
		if r.Event.Kind == "" {
			r.Event.Kind = canvas.KindPixel
		}
		switch {
		case from != 0 && w.Seq <= last:
			r.Dup = true
			c.stats.Duplicates++
		case from != 0:
			c.pos.Seq = max(c.pos.Seq, w.Seq)
		case w.Seq <= c.pos.Seq:
			r.Dup = true
			c.stats.Duplicates++
		case w.Seq == c.pos.Seq+1:
			c.pos.Seq = w.Seq
		default:
			c.stats.Gaps++
			gap = fmt.Errorf("%w: got %d after %d", errGap, w.Seq, c.pos.Seq)
		}
		if gap != nil {
			break
		}
		c.stats.Received++
		if r.Event.Kind == canvas.KindCanary {
			c.stats.Canaries++
		} else if c.visibleLocked(w.GX, w.GY) {
			// Events of regions the client no longer holds (before the
			// unsubscribe's acknowledgement) are not applied: nothing
			// would keep them current.
			c.applyLocked(w.GX, w.GY, col, w.Version)
			if c.holding {
				c.held = append(c.held, heldEvent{epoch: c.pos.Epoch, seq: w.Seq, gx: w.GX, gy: w.GY, color: col, version: w.Version})
				if len(c.held) > maxHeld {
					c.reloadLocked()
				}
			}
		}
		if !c.opts.DiscardHistory {
			c.history = append(c.history, r)
		}
		recs = append(recs, r)
	}
	c.mu.Unlock()
	if c.opts.OnEvent != nil {
		for _, r := range recs {
			c.opts.OnEvent(r)
		}
	}
	return gap
}

// visibleLocked reports whether the client holds pixel (gx, gy).
func (c *Client) visibleLocked(gx, gy int) bool {
	return !c.regional || c.want[canvas.RegionOf(gx, gy)]
}

// applyLocked keeps the newest version of a pixel: duplicates and replays
// can arrive in any order and still converge.
func (c *Client) applyLocked(gx, gy int, col canvas.Color, version int64) {
	k := [2]int{gx, gy}
	if cur, ok := c.pixels[k]; ok && cur.Version >= version {
		return
	}
	c.pixels[k] = CanvasPixel{Color: col, Version: version}
}

// requestSnapshotLocked asks for a snapshot and starts keeping the events
// that follow. The ones kept so far are dropped: they precede the position
// the request comes with, so the snapshot holds them (or, after a new
// epoch, they may belong to a history the database no longer has).
func (c *Client) requestSnapshotLocked() {
	c.holding, c.held = true, nil
	c.snapWant++
	c.pendAll = true
	clear(c.pendRegions)
	c.signalSnapshot()
}

// requestRegionsLocked asks for a snapshot of regions and keeps the events
// that follow. drop forgets those kept so far (a hello or resync: they
// precede its position); an acknowledgement keeps them, since other
// regions' loads may still need them.
func (c *Client) requestRegionsLocked(regions []canvas.Region, drop bool) {
	c.holding = true
	if drop {
		c.held = nil
	}
	c.snapWant++
	for _, r := range regions {
		c.pendRegions[r] = true
	}
	c.signalSnapshot()
}

func (c *Client) signalSnapshot() {
	select {
	case c.snapReq <- struct{}{}:
	default:
	}
}

// stopHoldingLocked stops keeping events once nothing needs them: every
// snapshot asked for loaded, and no subscribe awaiting its
// acknowledgement (its regions' events are kept from the moment it was
// sent).
func (c *Client) stopHoldingLocked() {
	if c.snapDone < c.snapWant {
		return
	}
	for _, op := range c.ops {
		if op.all || len(op.added) > 0 {
			return
		}
	}
	c.holding, c.held = false, nil
}

// snapshotLoop loads the snapshot whenever asked, retrying with backoff
// until it succeeds; requests made while a load runs cause one more load,
// since that load may predate the position they came with.
func (c *Client) snapshotLoop(ctx context.Context, snapURL string) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.snapReq:
		}
		var bo backoff.Backoff
		for {
			c.mu.Lock()
			want, all := c.snapWant, c.pendAll
			var regions []canvas.Region
			for r := range c.pendRegions {
				regions = append(regions, r)
			}
			c.pendAll = false
			clear(c.pendRegions)
			c.mu.Unlock()
			if !all && regions == nil {
				break
			}
			var err error
			if all {
				err = c.loadSnapshot(ctx, snapURL, want)
			} else {
				slices.Sort(regions)
				err = c.loadRegions(ctx, snapURL, want, regions)
			}
			if err == nil {
				bo.Reset()
				continue // anything asked for meanwhile
			}
			c.mu.Lock()
			if all {
				c.pendAll = true
			} else if !c.pendAll {
				for _, r := range regions {
					c.pendRegions[r] = true
				}
			}
			c.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			d := bo.Next(minBackoff, maxBackoff)
			c.log.Warn("snapshot failed; retrying", "err", err, "in", d)
			if backoff.Sleep(ctx, d); ctx.Err() != nil {
				return
			}
		}
	}
}

// fetchSnapshot reads GET /api/canvas (JSON) at u.
func (c *Client) fetchSnapshot(ctx context.Context, u string) (protocol.Snapshot, map[[2]int]CanvasPixel, error) {
	var s protocol.Snapshot
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return s, nil, fmt.Errorf("snapshot request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return s, nil, fmt.Errorf("get snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, nil, fmt.Errorf("get snapshot: status %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, nil, fmt.Errorf("decode snapshot: %w", err)
	}
	snap := make(map[[2]int]CanvasPixel, len(s.Pixels))
	for _, p := range s.Pixels {
		col, err := canvas.ParseColor(p.Color)
		if err != nil {
			return s, nil, fmt.Errorf("snapshot pixel (%d,%d): %w", p.GX, p.GY, err)
		}
		snap[[2]int{p.GX, p.GY}] = CanvasPixel{Color: col, Version: p.Version}
	}
	return s, snap, nil
}

// loadSnapshot loads the snapshot, asked for by requests up to want, and
// makes it the canvas.
func (c *Client) loadSnapshot(ctx context.Context, snapURL string, want uint64) error {
	s, snap, err := c.fetchSnapshot(ctx, snapURL)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.replaceLocked(snap, s.Position)
	c.loadedLocked(want)
	c.mu.Unlock()
	if c.opts.OnSnapshot != nil {
		c.opts.OnSnapshot(snap)
	}
	return nil
}

// loadRegions loads the snapshot of regions (sorted), asked for by
// requests up to want, and makes it those regions' pixels.
func (c *Client) loadRegions(ctx context.Context, snapURL string, want uint64, regions []canvas.Region) error {
	s, snap, err := c.fetchSnapshot(ctx, snapURL+"?regions="+joinRegions(regions))
	if err != nil {
		return err
	}
	in := make(map[canvas.Region]bool, len(regions))
	for _, r := range regions {
		in[r] = true
	}
	c.mu.Lock()
	c.replaceRegionsLocked(in, snap, s.Position)
	c.loadedLocked(want)
	c.mu.Unlock()
	if c.opts.OnSnapshot != nil {
		c.opts.OnSnapshot(snap)
	}
	return nil
}

func (c *Client) loadedLocked(want uint64) {
	c.snapDone = max(c.snapDone, want)
	c.stats.Snapshots++
	// Nothing asked for since this load began: its snapshot holds
	// everything before now.
	c.stopHoldingLocked()
}

// replaceLocked makes the canvas the snapshot, then applies again, by
// version, the held events the snapshot may not hold: those after its
// position, which was read before its pixels. Events at or before it are in
// the snapshot already (skipping them changes nothing while versions of one
// history only go up).
func (c *Client) replaceLocked(snap map[[2]int]CanvasPixel, at canvas.Position) {
	c.pixels = maps.Clone(snap)
	if c.regional { // the mode changed while it loaded
		maps.DeleteFunc(c.pixels, func(p [2]int, _ CanvasPixel) bool { return !c.visibleLocked(p[0], p[1]) })
	}
	for _, e := range c.held {
		if at.Epoch != "" && e.epoch == at.Epoch && e.seq <= at.Seq {
			continue
		}
		if c.visibleLocked(e.gx, e.gy) {
			c.applyLocked(e.gx, e.gy, e.color, e.version)
		}
	}
}

// replaceRegionsLocked does what replaceLocked does, for the regions in
// only: their pixels become the snapshot's, and the held events inside
// them after its position are applied again. Regions no longer held (or
// a whole canvas held meanwhile, which a whole snapshot replaces) are
// left alone.
func (c *Client) replaceRegionsLocked(in map[canvas.Region]bool, snap map[[2]int]CanvasPixel, at canvas.Position) {
	if !c.regional {
		return
	}
	inside := func(gx, gy int) bool {
		r := canvas.RegionOf(gx, gy)
		return in[r] && c.want[r]
	}
	maps.DeleteFunc(c.pixels, func(p [2]int, _ CanvasPixel) bool { return inside(p[0], p[1]) })
	for p, px := range snap {
		if inside(p[0], p[1]) {
			c.pixels[p] = px
		}
	}
	for _, e := range c.held {
		if at.Epoch != "" && e.epoch == at.Epoch && e.seq <= at.Seq {
			continue
		}
		if inside(e.gx, e.gy) {
			c.applyLocked(e.gx, e.gy, e.color, e.version)
		}
	}
}

// Position is the last (epoch, seq) the client holds every event up to.
func (c *Client) Position() canvas.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// Canvas returns a copy of the client's canvas: every painted pixel (of
// the regions it holds, with regions).
func (c *Client) Canvas() map[[2]int]CanvasPixel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.pixels)
}

// History returns every event received, in order, with its receive time.
func (c *Client) History() []Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Received(nil), c.history...)
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.SnapshotPending = c.snapDone < c.snapWant
	s.Frames, s.Bytes = c.frames.Load(), c.bytes.Load()
	return s
}

// Drop cuts the current connection without a close handshake, like a
// network failure; Run reconnects and resumes.
func (c *Client) Drop() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.NetConn().Close()
	}
}

// Pause stops (true) or restarts (false) reading from the socket, so the
// gateway sees a stalled client.
func (c *Client) Pause(p bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case p && c.resume == nil:
		c.resume = make(chan struct{})
	case !p && c.resume != nil:
		close(c.resume)
		c.resume = nil
	}
}

func (c *Client) waitUnpaused(ctx context.Context) error {
	c.mu.Lock()
	ch := c.resume
	c.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ping sends {"type":"ping"} (the one-byte binary ping with Binary); the
// pong's round trip lands in Stats().LastRTT.
func (c *Client) Ping() error {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return errors.New("client: not connected")
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.pingSent.Store(time.Now().UnixNano())
	_ = ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	mt, msg := websocket.TextMessage, []byte(`{"type":"ping"}`)
	if ws.Subprotocol() == protocol.SubprotocolBinary {
		mt, msg = websocket.BinaryMessage, []byte{protocol.BinPing}
	}
	if err := ws.WriteMessage(mt, msg); err != nil {
		return fmt.Errorf("client: ping: %w", err)
	}
	return nil
}
