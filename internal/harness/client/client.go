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
	return &Client{
		opts:    opts,
		log:     opts.Logger.With("component", "client", "name", opts.Name),
		http:    opts.HTTPClient,
		dialer:  opts.Dialer,
		snapReq: make(chan struct{}, 1),
		pixels:  make(map[[2]int]CanvasPixel),
	}
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
	c.mu.Unlock()
	q := url.Values{}
	if resuming {
		q.Set("since", since.String())
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
			c.onHello(f, resuming, since)
		case protocol.TypeEvents:
			if !hello {
				return hello, errors.New("events before hello")
			}
			if err := c.onEvents(f.Events, now); err != nil {
				return hello, err
			}
		case protocol.TypeResync:
			c.onResync(f)
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
func (c *Client) onHello(f protocol.ServerFrame, resuming bool, since canvas.Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if resuming && f.Resumed && f.Epoch == since.Epoch {
		c.stats.Resumes++
		return
	}
	c.pos = canvas.Position{Epoch: f.Epoch, Seq: f.Seq}
	c.havePos = f.Epoch != ""
	c.requestSnapshotLocked()
}

// onResync moves to the gateway's position and reloads the snapshot: the
// events before it cannot be delivered, the events after it will be.
func (c *Client) onResync(f protocol.ServerFrame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Resyncs++
	c.pos = canvas.Position{Epoch: f.Epoch, Seq: f.Seq}
	c.havePos = f.Epoch != ""
	c.log.Debug("resync", "reason", f.Reason, "position", c.pos.String())
	c.requestSnapshotLocked()
}

// onEvents checks continuity and applies each event by version.
func (c *Client) onEvents(evs []protocol.Event, now time.Time) error {
	recs := make([]Received, 0, len(evs))
	var gap error
	c.mu.Lock()
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
		} else {
			c.applyLocked(w.GX, w.GY, col, w.Version)
			if c.holding {
				c.held = append(c.held, heldEvent{epoch: c.pos.Epoch, seq: w.Seq, gx: w.GX, gy: w.GY, color: col, version: w.Version})
				if len(c.held) > maxHeld {
					c.requestSnapshotLocked()
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
	select {
	case c.snapReq <- struct{}{}:
	default:
	}
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
			want := c.snapWant
			c.mu.Unlock()
			err := c.loadSnapshot(ctx, snapURL, want)
			if err == nil {
				break
			}
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

// loadSnapshot loads the snapshot, asked for by requests up to want, and
// makes it the canvas.
func (c *Client) loadSnapshot(ctx context.Context, snapURL string, want uint64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, snapURL, nil)
	if err != nil {
		return fmt.Errorf("snapshot request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("get snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get snapshot: status %s", resp.Status)
	}
	var s protocol.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	snap := make(map[[2]int]CanvasPixel, len(s.Pixels))
	for _, p := range s.Pixels {
		col, err := canvas.ParseColor(p.Color)
		if err != nil {
			return fmt.Errorf("snapshot pixel (%d,%d): %w", p.GX, p.GY, err)
		}
		snap[[2]int{p.GX, p.GY}] = CanvasPixel{Color: col, Version: p.Version}
	}
	c.mu.Lock()
	c.replaceLocked(snap, s.Position)
	c.snapDone = max(c.snapDone, want)
	c.stats.Snapshots++
	if c.snapDone >= c.snapWant {
		// Nothing asked for since this load began: its snapshot
		// holds everything before now.
		c.holding, c.held = false, nil
	}
	c.mu.Unlock()
	if c.opts.OnSnapshot != nil {
		c.opts.OnSnapshot(snap)
	}
	return nil
}

// replaceLocked makes the canvas the snapshot, then applies again, by
// version, the held events the snapshot may not hold: those after its
// position, which was read before its pixels. Events at or before it are in
// the snapshot already (skipping them changes nothing while versions of one
// history only go up).
func (c *Client) replaceLocked(snap map[[2]int]CanvasPixel, at canvas.Position) {
	c.pixels = maps.Clone(snap)
	for _, e := range c.held {
		if at.Epoch != "" && e.epoch == at.Epoch && e.seq <= at.Seq {
			continue
		}
		c.applyLocked(e.gx, e.gy, e.color, e.version)
	}
}

// Position is the last (epoch, seq) the client holds every event up to.
func (c *Client) Position() canvas.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos
}

// Canvas returns a copy of the client's canvas: every painted pixel.
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
