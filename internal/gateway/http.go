package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/clientip"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// ServeHTTP is the /ws endpoint. Everything that can be refused is refused
// before the upgrade with a JSON error (400 bad since or fields, or a
// subprotocol this gateway does not speak; 403 origin, 429 too many
// connections from one address, 503 full or closing); after it the
// connection gets a hello, the replay of its gap or a resync, then the live
// stream.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, canvas.EInvalid, "use GET with a WebSocket upgrade")
		return
	}
	if !websocket.IsWebSocketUpgrade(r) {
		writeError(w, http.StatusBadRequest, canvas.EInvalid, "this endpoint speaks WebSocket only")
		return
	}
	q := r.URL.Query()
	since, hasSince, err := parseSince(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, canvas.ErrorCode(err), canvas.ErrorMessage(err))
		return
	}
	format, err := parseFields(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, canvas.ErrorCode(err), canvas.ErrorMessage(err))
		return
	}
	v, err := parseRegions(q, g.opts.Size)
	if err != nil {
		writeError(w, http.StatusBadRequest, canvas.ErrorCode(err), canvas.ErrorMessage(err))
		return
	}
	subprotocol, err := negotiate(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, canvas.ErrorCode(err), canvas.ErrorMessage(err))
		return
	}
	if subprotocol == protocol.SubprotocolBinary {
		if v.regional {
			writeError(w, http.StatusBadRequest, canvas.EInvalid, "regions= is for the JSON protocol in this version: "+protocol.SubprotocolBinary+" receives the whole canvas")
			return
		}
		if format != 0 {
			writeError(w, http.StatusBadRequest, canvas.EInvalid, "fields= is for the JSON protocol: "+protocol.SubprotocolBinary+" carries no optional fields")
			return
		}
		format = binaryFormat
	}
	if !g.originAllowed(r) {
		writeError(w, http.StatusForbidden, codeForbidden, "origin not allowed")
		return
	}
	client := clientip.Key(g.clients.Addr(r))
	if status, msg := g.reserve(client); status != 0 {
		writeError(w, status, codeForStatus(status), msg)
		return
	}
	// The server's read and write deadlines are for requests; a session
	// keeps its own (pongWait, writeWait).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	out := newSocket()
	var answer http.Header
	if subprotocol != "" {
		answer = http.Header{"Sec-Websocket-Protocol": {subprotocol}}
	}
	ws, err := g.upgrader.Upgrade(hijacker{w, out, g.opts.SendBuffer}, r, answer)
	if err != nil { // the upgrader has answered
		g.release(nil, client)
		return
	}
	c := newConn(g, ws, out, format)
	c.view = v // before the hub sees c
	c.filtered.Store(v.regional)
	// The writer is part of the connection: its slot is released only once
	// the writer has returned too, so Close, which waits for every slot,
	// leaves no writer goroutine behind.
	var writer sync.WaitGroup
	defer func() {
		c.closeWith(0, "")
		_ = ws.Close()
		writer.Wait()
		g.release(c, client)
	}()
	if !g.attach(c) {
		c.closeWith(websocket.CloseGoingAway, "gateway shutting down")
		c.drain()
		return
	}
	if err := g.start(r.Context(), c, since, hasSince); err != nil {
		g.log.Debug("client start failed", "err", err)
		return
	}
	writer.Add(1)
	go func() {
		defer writer.Done()
		c.writeLoop()
	}()
	c.readLoop()
}

// start registers c with the hub, then writes its hello and either the
// replay of its gap or a resync, directly: the writer is not running yet,
// and live entries queue up behind meanwhile. Registering first is what
// makes replay and live meet without a hole: the hub hands out the position
// under the same lock that broadcasts, so every entry after it is queued to
// c, and the replay covers everything up to it.
func (g *Gateway) start(ctx context.Context, c *conn, since canvas.Position, hasSince bool) error {
	pos := g.hub.register(c)
	var (
		first   []stream.Entry // the replay's first page
		reason  string
		resumed bool
	)
	if hasSince {
		first, reason = g.planResume(ctx, since, pos)
		resumed = reason == ""
	}
	c.through = pos.Seq
	if resumed {
		c.through = since.Seq
	}
	if err := c.write(encodeHello(c.format, pos, resumed)); err != nil {
		return err
	}
	if reason != "" {
		g.stats.resyncs.Add(1)
		c.through = pos.Seq
		return c.write(encodeResync(c.format, reason, pos))
	}
	if len(first) == 0 {
		return nil
	}
	return g.replay(ctx, c, first, pos)
}

// replay writes the gap after since up to pos, starting with its first
// page, reading the rest from the stream a page at a time: a replaying
// connection holds one page, however long the gap. It stops early once
// the client has been told to resync (its queue overflowed while the
// replay ran, or the stream moved on): the resync the writer sends next
// covers the rest. A hole in the stream (trimmed meanwhile) ends the
// replay with a resync.
func (g *Gateway) replay(ctx context.Context, c *conn, page []stream.Entry, pos canvas.Position) error {
	var buf []byte
	// c's view cannot change meanwhile: its frames are read only once
	// the replay is over.
	v := c.view
	for {
		held := v.filter(page)
		evs := encodeEvents(c.format, toWireAll(held))
		for sent := 0; sent < len(evs); {
			n := min(len(evs)-sent, maxFrame)
			var err error
			if c.filtered.Load() {
				buf = appendFromWire(buf[:0], c.through+1, evs[sent:sent+n])
				err = c.writeFrame(buf)
			} else {
				buf = appendEventsPayload(buf[:0], c.format, held[sent].Seq, evs[sent:sent+n])
				err = c.write(buf)
			}
			if err != nil {
				return err
			}
			c.through = held[sent+n-1].Seq
			g.stats.delivered.Add(int64(n))
			sent += n
		}
		next := page[len(page)-1].Seq + 1
		if next > pos.Seq || c.resynced() {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		page, err = g.rangeOffered(rctx, pos.Epoch, next, pos.Seq)
		cancel()
		reason := ""
		switch {
		case err != nil:
			g.log.Warn("replay read failed", "err", err, posAttr(canvas.Position{Epoch: pos.Epoch, Seq: next}))
			reason = protocol.ReasonUnavailable
		case len(page) == 0 || page[0].Seq != next || !contiguous(page, pos.Epoch):
			reason = protocol.ReasonTrimmed
		}
		if reason != "" {
			g.stats.resyncs.Add(1)
			c.through = pos.Seq
			return c.write(encodeResync(c.format, reason, pos))
		}
	}
}

// offerWait bounds how long a replay waits for the stream to catch up with
// entries the hub took from an in-process relay before their XADD: that
// is one round trip to Redis, unless Redis or the relay stalls, and then
// the client resyncs as it would for any stream it cannot read.
const offerWait = 2 * time.Second

// errNotAppended: entries the hub broadcast did not reach the stream within
// offerWait.
var errNotAppended = errors.New("entries broadcast before their XADD are not in the stream yet")

// rangeOffered reads a replay page, entries from..to of epoch. When a relay
// in this process offers entries before appending them (Offer), the hub's
// position, and so a replay's end, can be ahead of the stream: a page
// that finds nothing because the stream's tail is still short of from
// is read again once the XADD has landed, rather than taken for a
// trimmed stream; after offerWait it is errNotAppended.
func (g *Gateway) rangeOffered(ctx context.Context, epoch string, from, to uint64) ([]stream.Entry, error) {
	deadline := time.Now().Add(offerWait)
	pause := time.Millisecond
	for {
		page, err := g.stream.Range(ctx, from, to, replayPage)
		if err != nil || len(page) > 0 || !g.offered.Load() {
			return page, err
		}
		tail, err := g.stream.Tail(ctx)
		if err != nil {
			return nil, err
		}
		if tail.Epoch != epoch || tail.Seq >= from {
			return page, nil // trimmed, or another epoch
		}
		if time.Now().Add(pause).After(deadline) {
			return nil, fmt.Errorf("read stream range %d..%d: %w", from, to, errNotAppended)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// contiguous reports whether page holds consecutive sequences of epoch.
func contiguous(page []stream.Entry, epoch string) bool {
	for i, e := range page {
		if e.Epoch != epoch || (i > 0 && e.Seq != page[i-1].Seq+1) {
			return false
		}
	}
	return true
}

// planResume decides how a client resuming from since catches up with pos,
// the position it was registered at. It returns the first page of entries
// to replay, or the reason it must resync instead.
func (g *Gateway) planResume(ctx context.Context, since, pos canvas.Position) ([]stream.Entry, string) {
	switch {
	case pos.Epoch == "":
		return nil, protocol.ReasonUnavailable
	case since.Epoch != pos.Epoch:
		return nil, protocol.ReasonEpoch
	case since.Seq == pos.Seq:
		return nil, ""
	case since.Seq > pos.Seq:
		// The client is ahead of this gateway (which is catching up, or
		// just started): entries up to since arrive again as duplicates.
		// Accept only a position the stream has actually reached.
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		tail, err := g.stream.Tail(ctx)
		switch {
		case err != nil:
			return nil, protocol.ReasonUnavailable
		case tail.Epoch != pos.Epoch || tail.Seq < since.Seq:
			return nil, protocol.ReasonAhead
		}
		return nil, ""
	case pos.Seq-since.Seq > uint64(g.opts.ReplayLimit):
		return nil, protocol.ReasonLimit
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	page, err := g.rangeOffered(ctx, pos.Epoch, since.Seq+1, pos.Seq)
	if err != nil {
		g.log.Warn("replay read failed", "err", err, posAttr(since))
		return nil, protocol.ReasonUnavailable
	}
	// Ids are unique and ordered: a page starting at the right sequence
	// begins the gap; one that starts later means its start was trimmed.
	if len(page) == 0 || page[0].Seq != since.Seq+1 {
		return nil, protocol.ReasonTrimmed
	}
	if !contiguous(page, pos.Epoch) {
		return nil, protocol.ReasonEpoch
	}
	return page, ""
}

// originAllowed applies Options.AllowedOrigins. Browsers always send Origin
// on WebSocket handshakes, so a missing header is a non-browser client,
// which cross-site request forgery cannot involve.
func (g *Gateway) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(g.opts.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range g.opts.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
			return true
		}
	}
	return false
}

// codeForbidden is the error code of a refused origin; canvas has no
// authorization errors because only the gateway refuses callers.
const codeForbidden = "forbidden"

func codeForStatus(status int) string {
	switch {
	case status == http.StatusForbidden:
		return codeForbidden
	case status == http.StatusTooManyRequests:
		return canvas.ERateLimited
	case status >= 500:
		return canvas.EUnavailable
	}
	return canvas.EInvalid
}

// writeError answers {"error":{"code","message"}}, the shape every
// pixelflow endpoint uses.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
