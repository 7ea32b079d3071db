package gateway

import (
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/protocol"
)

// item is one entry of a client's queue: either a broadcast batch (shared
// read-only with every other client's queue) or a whole control frame
// (resync, pong, ping), WebSocket header included.
type item struct {
	batch *batch
	ctl   []byte
	// resync: ctl is a resync to resyncSeq (the client's position becomes
	// it).
	resync    bool
	resyncSeq uint64
}

// batch is one broadcast's events, shared read-only by every client's
// queue. It encodes them once per wire format in use (see wireFormat),
// lazily, by whichever flusher needs that format first; a client whose
// queue holds only this batch (the usual case: a lone event, or a burst
// read from the stream at once) is sent the same frame as every other
// client of its format, so that frame is assembled once too, instead of
// once per client.
type batch struct {
	first uint64      // sequence of evs[0]; the others follow one by one
	evs   []wireEvent // read-only
	enc   [numFormats]encoding
}

// encoding is a batch in one wire format; each part is set by its once and
// read-only after.
type encoding struct {
	once     sync.Once
	evs      [][]byte // each event's bytes
	wireOnce sync.Once
	wire     []byte // the events frame of evs, header included
}

func newBatch(first uint64, evs []wireEvent) *batch { return &batch{first: first, evs: evs} }

// events returns b's events encoded in format f.
func (b *batch) events(f wireFormat) [][]byte {
	e := &b.enc[f]
	e.once.Do(func() { e.evs = encodeEvents(f, b.evs) })
	return e.evs
}

// sharedWire returns the events frame of b in format f, header included;
// b must hold at most maxFrame events.
func (b *batch) sharedWire(f wireFormat) []byte {
	e := &b.enc[f]
	e.wireOnce.Do(func() { e.wire = appendEventsWire(nil, f, b.first, b.events(f)) })
	return e.wire
}

// Control frames, whole: the pong in each encoding, and the protocol ping.
var (
	pongWire    = textFrame(pongFrame)
	pongWireBin = appendFrame(nil, opBinary, []byte{protocol.BinPong})
	pingWire    = appendFrame(nil, opPing, nil)
)

// errClosing is a write refused because the connection is closing.
var errClosing = errors.New("connection closing")

// conn is one WebSocket client: a bounded queue filled by the hub and sent
// by its flusher (see flusher) or, while the client's socket is backed up,
// by the connection's own writer goroutine; and a reader (the ServeHTTP
// goroutine) that only answers pings and polices what the client sends.
type conn struct {
	g   *Gateway
	ws  *websocket.Conn // the handshake and reading; frames go out through out
	out *socket
	fl  *flusher
	// format is how this connection's frames are encoded, fixed at the
	// upgrade (subprotocol and fields=).
	format wireFormat
	// view is what the connection receives, the whole canvas or its
	// regions; round and hits are broadcastRegions' scratch. All three are
	// guarded by the hub's lock.
	view  view
	round uint64
	hits  []int
	// filtered is set once the connection has held regions: its events
	// frames carry "from" from then on (see assembleFrom).
	filtered atomic.Bool
	// through is the last sequence the client has been told about (hello,
	// resync, the last event of a frame): a filtered frame's "from" is the
	// one after it. Only the writer holding the socket's turn uses it.
	through uint64
	wake    chan struct{} // cap 1: wakes the writer goroutine
	done    chan struct{} // closed when the connection is closing

	closeOnce sync.Once
	marked    atomic.Bool  // c is in its flusher's marked list (or waiting in it)
	lastWrite atomic.Int64 // g.mono() after the last queue write; 0: none yet

	mu         sync.Mutex
	q          []item // guarded by mu
	spare      []item // a written slice, recycled
	queued     int    // events in q
	pongQueued bool   // a pong is in q
	pingQueued bool   // a ping is in q
	closing    bool   // done is closed: nothing more is written but the close frame
	wasResync  bool   // a resync was queued: a replay in progress stops
	acks       int    // subscribed frames in q
	lastAck    []byte // the newest of them, kept across a resync
	// writer: the writer goroutine sends everything queued until the queue
	// is empty, and flushers leave c alone. It starts set (the connection's
	// opening is written directly, then the writer drains what queued
	// meanwhile) and is set again when a non-blocking write fell short.
	writer bool
	// rest is the end of a frame the kernel did not take; the writer must
	// send it before anything else, and the turn is held for it meanwhile.
	rest       []byte
	restEvents int // events delivered once rest is written

	wbuf   []byte   // the writer goroutine's frame scratch
	joined [][]byte // the writer goroutine's scratch for joining batches
}

func newConn(g *Gateway, ws *websocket.Conn, out *socket, format wireFormat) *conn {
	g.connMu.Lock()
	g.flushers.start(g)
	fl := g.flushers.assign()
	g.connMu.Unlock()
	return &conn{g: g, ws: ws, out: out, fl: fl, format: format, wake: make(chan struct{}, 1), done: make(chan struct{}), writer: true}
}

// signal wakes the writer goroutine.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// mark asks c's flusher to send its queue (at most once until it has).
func (c *conn) mark() {
	if c.marked.CompareAndSwap(false, true) {
		c.fl.add(c)
	}
}

// enqueue appends b unless that would overflow limit; false means the
// caller must degrade the client. It never blocks on the network. The
// caller marks c (mark) when it returns true.
func (c *conn) enqueue(b *batch, limit int) bool {
	c.mu.Lock()
	if c.queued+len(b.evs) > limit {
		c.mu.Unlock()
		return false
	}
	c.q = append(c.q, item{batch: b})
	c.queued += len(b.evs)
	c.mu.Unlock()
	return true
}

// resync drops the client's backlog and queues the resync frame (a whole
// frame, see textFrame) in its place: the client loses nothing (the snapshot
// it reloads covers every event up to the resync's position, which is past
// the dropped ones) and its queue stays bounded however often it is
// resynced.
//
// A subscription acknowledgement the client has not been sent yet is kept,
// after the resync: the client waits for it to load its new regions, and
// its position is behind the resync's, which only means those regions'
// snapshots are certainly new enough.
func (c *conn) resync(frame []byte, seq uint64) {
	c.mu.Lock()
	clear(c.q)
	c.q = append(c.q[:0], item{ctl: frame, resync: true, resyncSeq: seq})
	if c.acks > 0 {
		c.q = append(c.q, item{ctl: c.lastAck})
		c.acks = 1
	}
	c.queued = 0
	c.pongQueued, c.pingQueued = false, false
	c.wasResync = true
	c.mu.Unlock()
	c.mark()
}

// maxPendingAcks bounds the subscription acknowledgements queued to one
// client: a client that changes its regions faster than it reads is
// flooding, and is closed rather than allowed to grow its queue.
const maxPendingAcks = 8

// errSubscribeFlood closes a client past maxPendingAcks.
var errSubscribeFlood = &frameError{Code: 1008, Reason: "subscription flood: too many changes unacknowledged"}

// acknowledge queues a subscribed frame (payload, JSON); the hub calls it
// under its lock, right after changing c's view.
func (c *conn) acknowledge(payload []byte) error {
	c.mu.Lock()
	if c.acks >= maxPendingAcks {
		c.mu.Unlock()
		return errSubscribeFlood
	}
	frame := textFrame(payload)
	c.q = append(c.q, item{ctl: frame})
	c.acks++
	c.lastAck = frame
	c.mu.Unlock()
	c.mark()
	return nil
}

// resynced reports whether a resync was queued to c: a replay running
// before the writer started has nothing left to do.
func (c *conn) resynced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wasResync
}

// pong queues an answer to the client's ping, unless one is already
// waiting: a client that pings without reading cannot grow the queue.
func (c *conn) pong() {
	c.mu.Lock()
	if c.pongQueued {
		c.mu.Unlock()
		return
	}
	c.pongQueued = true
	pong := pongWire
	if c.format.binary() {
		pong = pongWireBin
	}
	c.q = append(c.q, item{ctl: pong})
	c.mu.Unlock()
	c.mark()
}

// ping queues a protocol-level ping; the writer goroutine calls it every
// pingPeriod.
func (c *conn) ping() {
	c.mu.Lock()
	if c.pingQueued {
		c.mu.Unlock()
		return
	}
	c.pingQueued = true
	c.q = append(c.q, item{ctl: pingWire})
	c.mu.Unlock()
	c.mark()
}

// takeLocked swaps the queue out; the caller holds mu.
func (c *conn) takeLocked() []item {
	q := c.q
	c.q, c.spare = c.spare[:0], nil
	c.queued = 0
	c.pongQueued, c.pingQueued = false, false
	c.acks = 0
	return q
}

// recycle hands a written slice back so the next take allocates nothing.
func (c *conn) recycle(q []item) {
	clear(q)
	c.mu.Lock()
	if c.spare == nil {
		c.spare = q[:0]
	}
	c.mu.Unlock()
}

// flush is a flusher sending c's queue: one non-blocking write of every
// queued frame. If the kernel takes only part of it, the rest goes to the
// writer goroutine with the turn, and c stays with its writer until its
// queue is empty. buf is the flusher's scratch, returned grown.
func (c *conn) flush(buf []byte, joined *[][]byte) []byte {
	if !c.out.tryLock() {
		// Someone else is writing: the writer goroutine (which drains the
		// queue itself), closeWith, or gorilla's control frame. Leave the
		// queue to the writer rather than wait.
		c.mu.Lock()
		handOff := !c.writer && !c.closing && len(c.q) > 0
		if handOff {
			c.writer = true
		}
		c.mu.Unlock()
		if handOff {
			c.signal()
		}
		return buf
	}
	c.mu.Lock()
	if c.writer || c.closing || len(c.q) == 0 {
		c.mu.Unlock()
		c.out.unlock()
		return buf
	}
	if c.out.raw == nil { // no non-blocking writes on this connection
		c.writer = true
		c.mu.Unlock()
		c.out.unlock()
		c.signal()
		return buf
	}
	q := c.takeLocked()
	c.mu.Unlock()
	data, events, buf := c.assemble(buf, q, joined)
	n, err := c.out.tryWrite(data)
	c.recycle(q)
	if err != nil {
		c.out.unlock()
		c.g.log.Debug("client write failed", "err", err)
		c.closeWith(0, "")
		return buf
	}
	if n == len(data) {
		c.out.unlock()
		c.lastWrite.Store(c.g.mono())
		c.g.stats.delivered.Add(int64(events))
		return buf
	}
	// The turn stays held: the writer goroutine finishes the frame.
	rest := slices.Clone(data[n:])
	c.mu.Lock()
	c.rest, c.restEvents, c.writer = rest, events, true
	c.mu.Unlock()
	c.signal()
	return buf
}

// assemble returns the bytes that send q on c, and moves c.through past
// them: in c's format (assembleFrames), or with "from" on every events
// frame (assembleFrom) once c has held regions. The caller holds c's turn.
func (c *conn) assemble(buf []byte, q []item, joined *[][]byte) (data []byte, events int, out []byte) {
	if c.filtered.Load() {
		return c.assembleFrom(buf, q)
	}
	for _, it := range q {
		switch {
		case it.batch != nil:
			c.through = it.batch.evs[len(it.batch.evs)-1].seq
		case it.resync:
			c.through = it.resyncSeq
		}
	}
	return assembleFrames(buf, c.format, q, joined)
}

// assembleFrom is assemble for a connection that holds regions (JSON
// only): its batches hold only the events inside its regions, so
// sequences skip, and each events frame names the first sequence it
// covers, the one after the last the client was told about.
func (c *conn) assembleFrom(buf []byte, q []item) (data []byte, events int, out []byte) {
	var pending [][]byte // owned: appended to, never a batch's own slice
	var last uint64      // sequence of pending's last event
	flush := func() {
		if len(pending) == 0 {
			return
		}
		buf = appendFromWire(buf, c.through+1, pending)
		events += len(pending)
		pending = pending[:0]
		c.through = last
	}
	for _, it := range q {
		if it.batch == nil {
			flush()
			buf = append(buf, it.ctl...)
			if it.resync {
				c.through = it.resyncSeq
			}
			continue
		}
		evs, seqs := it.batch.events(c.format), it.batch.evs
		for len(evs) > 0 { // frames of at most maxFrame events
			n := min(len(evs), maxFrame-len(pending))
			pending = append(pending, evs[:n]...)
			last = seqs[n-1].seq
			evs, seqs = evs[n:], seqs[n:]
			if len(pending) == maxFrame {
				flush()
			}
		}
	}
	flush()
	return buf, events, buf
}

// assembleFrames returns the bytes that send q in format f: consecutive event
// batches packed into events frames of at most maxFrame events, control
// frames alone, in order. Batches join only where their sequences run on
// (a binary frame names its first sequence only; the hub queues contiguous
// batches, so this holds but for a resync, which is a control frame
// between them anyway). A lone batch that fits a frame is its shared
// frame; anything else is built in buf (returned grown). Batches are
// shared with other clients' queues, so they are only read.
func assembleFrames(buf []byte, f wireFormat, q []item, joined *[][]byte) (data []byte, events int, out []byte) {
	if len(q) == 1 {
		if b := q[0].batch; b != nil && len(b.evs) <= maxFrame {
			return b.sharedWire(f), len(b.evs), buf
		}
		if q[0].ctl != nil {
			return q[0].ctl, 0, buf
		}
	}
	var pending [][]byte
	var first uint64 // sequence of pending[0]
	owned := (*joined)[:0]
	flush := func() {
		for len(pending) > 0 {
			n := min(len(pending), maxFrame)
			buf = appendEventsWire(buf, f, first, pending[:n])
			events += n
			pending = pending[n:]
			first += uint64(n)
		}
	}
	for _, it := range q {
		if it.ctl != nil {
			flush()
			buf = append(buf, it.ctl...)
			continue
		}
		if len(pending) > 0 && it.batch.first != first+uint64(len(pending)) {
			flush()
		}
		evs := it.batch.events(f)
		switch {
		case len(pending) == 0:
			pending, first = evs, it.batch.first
		case len(owned) == 0 || &owned[0] != &pending[0]:
			owned = append(append(owned[:0], pending...), evs...)
			pending = owned
		default:
			owned = append(owned, evs...)
			pending = owned
		}
	}
	flush()
	clear(owned)
	*joined = owned[:0]
	return buf, events, buf
}

// writeLoop is the connection's writer goroutine. It sends what queued while
// the connection opened, then sleeps until its flusher hands the connection
// over (its socket was backed up), and queues a protocol ping every
// pingPeriod.
func (c *conn) writeLoop() {
	c.g.stats.writers.Add(1)
	defer func() {
		if h := c.g.hooks.writerExit; h != nil {
			h()
		}
		c.g.stats.writers.Add(-1)
	}()
	ticker := time.NewTicker(pingPeriod)
	defer ticker.Stop()
	for {
		if !c.sendQueued() {
			return
		}
		select {
		case <-c.wake:
		case <-ticker.C:
			c.ping()
		case <-c.done:
			return
		}
	}
}

// sendQueued sends, with blocking writes under writeWait, whatever is queued
// while c is with its writer, then gives c back to its flusher once the
// queue is empty. False means the connection is closing.
func (c *conn) sendQueued() bool {
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			return false
		}
		if !c.writer {
			c.mu.Unlock()
			return true
		}
		rest, events := c.rest, c.restEvents
		c.rest, c.restEvents = nil, 0
		c.mu.Unlock()
		if rest == nil && !c.out.lock(c.done) { // with rest, the turn is ours already
			return false
		}
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			if rest == nil {
				c.out.unlock()
			} // else the stream is mid-frame: keep the turn, so no close frame lands inside it
			return false
		}
		q := c.takeLocked()
		if rest == nil && len(q) == 0 {
			c.writer = false
			c.mu.Unlock()
			c.out.unlock()
			return true
		}
		c.mu.Unlock()
		deadline := time.Now().Add(writeWait)
		var err error
		if rest != nil {
			err = c.out.writeAll(rest, deadline)
		}
		if err == nil && len(q) > 0 {
			var data []byte
			var n int
			data, n, c.wbuf = c.assemble(c.wbuf[:0], q, &c.joined)
			err = c.out.writeAll(data, deadline)
			events += n
		}
		c.recycle(q)
		c.out.unlock()
		if err != nil {
			c.g.log.Debug("client write failed", "err", err)
			c.closeWith(0, "")
			return false
		}
		c.lastWrite.Store(c.g.mono())
		c.g.stats.delivered.Add(int64(events))
	}
}

// write sends one message in the connection's encoding at once, waiting
// for its turn; it is for the connection's opening (hello, replay,
// resync), written before the writer goroutine starts.
func (c *conn) write(payload []byte) error {
	if !c.out.lock(c.done) {
		return errClosing
	}
	defer c.out.unlock()
	return c.out.writeAll(messageFrame(c.format, payload), time.Now().Add(writeWait))
}

// writeFrame is write for a message already framed (header included).
func (c *conn) writeFrame(frame []byte) error {
	if !c.out.lock(c.done) {
		return errClosing
	}
	defer c.out.unlock()
	return c.out.writeAll(frame, time.Now().Add(writeWait))
}

// closeSent is the closeWith "code" of a connection whose close frame gorilla
// has already written (a frame over the read limit).
const closeSent = -1

// closeWith starts closing the connection, once. With a code it sends that
// close frame (after the frame being written, if any) and gives the client
// closeGrace to answer before the reader gives up; with closeSent it only
// gives that grace; without a code, or when the frame cannot be sent within
// closeGrace, it cuts the TCP connection (the peer is gone or unwritable
// anyway).
func (c *conn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		c.g.hub.unregister(c)
		c.mu.Lock()
		c.closing = true
		rest := c.rest // when set, the turn is held for it: it becomes ours
		c.rest = nil
		c.mu.Unlock()
		close(c.done)
		c.signal()
		switch code {
		case 0:
			_ = c.out.nc.Close()
			return
		case closeSent:
			_ = c.out.nc.SetReadDeadline(time.Now().Add(closeGrace))
			return
		}
		deadline := time.Now().Add(closeGrace)
		if rest == nil && !c.out.lockBy(deadline) {
			_ = c.out.nc.Close()
			return
		}
		frame := appendFrame(rest, opClose, websocket.FormatCloseMessage(code, reason))
		err := c.out.writeAll(frame, deadline)
		c.out.unlock()
		if err != nil {
			_ = c.out.nc.Close()
			return
		}
		_ = c.out.nc.SetReadDeadline(deadline)
	})
}

// readLoop runs on the ServeHTTP goroutine until the connection ends. A
// client has nothing to say but ping (a text {"type":"ping"}, or the binary
// ping of pixelflow.v1.bin); anything else closes its connection
// with the matching close code, and no other connection notices.
func (c *conn) readLoop() {
	limit := int64(maxClientFrame)
	if c.format.binary() {
		limit = maxBinaryClientFrame
	}
	c.ws.SetReadLimit(limit)
	_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				// gorilla already sent 1009; let the client see it.
				c.closeWith(closeSent, "")
				c.drain()
			}
			return
		}
		f, err := parseClientFrame(c.format, mt, data)
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				c.closeWith(fe.Code, fe.Reason)
			}
			c.drain()
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
		switch f.Type {
		case protocol.TypePing:
			c.pong()
		default:
			if err := c.g.hub.change(c, c.g.opts.Size, f); err != nil {
				var fe *frameError
				if errors.As(err, &fe) {
					c.closeWith(fe.Code, fe.Reason)
				}
				c.drain()
				return
			}
		}
	}
}

// drain reads and discards until the client closes or closeGrace passes.
// Closing a socket with unread input makes the kernel send RST, which can
// destroy the close frame before the client reads it.
func (c *conn) drain() {
	nc := c.out.nc
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, nc)
}
