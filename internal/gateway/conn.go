package gateway

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/protocol"
)

// item is one entry of a client's queue: either a broadcast batch (shared
// read-only with every other client's queue) or a whole control frame
// (resync, pong).
type item struct {
	batch *batch
	ctl   []byte
}

// batch is one broadcast's encoded events, shared read-only by every
// client's queue. A writer whose queue holds only this batch (the usual
// case: a lone event, or a burst read from the stream at once) sends the
// same frame as every other writer, so that frame is assembled once, by
// whichever writer needs it first, instead of once per client.
type batch struct {
	evs   [][]byte
	once  sync.Once
	frame []byte // the events frame of evs; set by once, read-only after
}

func newBatch(evs [][]byte) *batch { return &batch{evs: evs} }

// sharedFrame returns the events frame of b, which must hold at most
// maxFrame events.
func (b *batch) sharedFrame() []byte {
	b.once.Do(func() { b.frame = appendEventsFrame(nil, b.evs) })
	return b.frame
}

// conn is one WebSocket client: a bounded queue filled by the hub, drained
// by one writer goroutine, and a reader (the ServeHTTP goroutine) that only
// answers pings and polices what the client sends.
type conn struct {
	g    *Gateway
	ws   *websocket.Conn
	wake chan struct{} // cap 1: "the queue is not empty"
	done chan struct{} // closed when the connection is closing

	closeOnce sync.Once

	mu         sync.Mutex
	q          []item // guarded by mu
	spare      []item // the writer's previous slice, recycled
	queued     int    // events in q
	pongQueued bool   // a pong is in q
	pingDue    bool   // pingPeriod has passed: the writer sends a ping
	closing    bool   // done is closed: the writer stops
	wasResync  bool   // a resync was queued: a replay in progress stops

	joined [][]byte // the writer's scratch for joining batches; writer only
}

func newConn(g *Gateway, ws *websocket.Conn) *conn {
	return &conn{g: g, ws: ws, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// signal wakes the writer. Everything it must react to (queued items, a
// due ping, closing) is recorded under mu before signalling, so the writer
// waits on this one channel alone: a plain receive is cheaper than a select
// over several, and the writer wakes once per event and client.
func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// enqueue appends evs unless that would overflow limit; false means the
// caller must degrade the client. It never blocks on the network.
func (c *conn) enqueue(b *batch, limit int) bool {
	c.mu.Lock()
	if c.queued+len(b.evs) > limit {
		c.mu.Unlock()
		return false
	}
	c.q = append(c.q, item{batch: b})
	c.queued += len(b.evs)
	c.mu.Unlock()
	c.signal()
	return true
}

// resync drops the client's backlog and queues the resync frame in its
// place: the client loses nothing (the snapshot it reloads covers every
// event up to the resync's position, which is past the dropped ones) and
// its queue stays bounded however often it is resynced.
func (c *conn) resync(frame []byte) {
	c.mu.Lock()
	clear(c.q)
	c.q = append(c.q[:0], item{ctl: frame})
	c.queued = 0
	c.pongQueued = false
	c.wasResync = true
	c.mu.Unlock()
	c.signal()
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
	c.q = append(c.q, item{ctl: pongFrame})
	c.mu.Unlock()
	c.signal()
}

// ping asks the writer to send a ping; it runs on a timer every pingPeriod.
func (c *conn) ping() {
	c.mu.Lock()
	c.pingDue = true
	c.mu.Unlock()
	c.signal()
}

// take swaps the queue out for the writer, with whether a ping is due and
// whether the connection is closing.
func (c *conn) take() (q []item, ping, closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q = c.q
	c.q, c.spare = c.spare[:0], nil
	c.queued = 0
	c.pongQueued = false
	ping, c.pingDue = c.pingDue, false
	return q, ping, c.closing
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

// writeLoop is the only goroutine that writes data frames once the
// connection is live. It waits for the queue to fill and writes everything
// queued. A lone event goes out at once; FlushWindow only spaces frames: what
// arrives within FlushWindow of the previous write waits for the window to
// end and shares a frame with whatever else arrived meanwhile. So an idle
// client costs no timer per event, and a busy one gets at most one frame per
// window.
func (c *conn) writeLoop() {
	c.g.stats.writers.Add(1)
	defer func() {
		if h := c.g.hooks.writerExit; h != nil {
			h()
		}
		c.g.stats.writers.Add(-1)
	}()
	pinger := time.AfterFunc(pingPeriod, c.ping)
	defer pinger.Stop()
	window := c.g.opts.FlushWindow
	var (
		timer     *time.Timer // the window's wait; made on first use
		lastWrite time.Time   // end of the previous write
		buf       []byte
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		<-c.wake
		if window > 0 && !lastWrite.IsZero() {
			if wait := window - time.Since(lastWrite); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-c.done:
					return
				case <-timer.C:
				}
			}
		}
		q, ping, closing := c.take()
		if closing {
			return
		}
		if ping {
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				c.closeWith(0, "")
				return
			}
			pinger.Reset(pingPeriod)
		}
		var err error
		buf, err = c.writeItems(buf[:0], q)
		c.recycle(q)
		if err != nil {
			c.g.log.Debug("client write failed", "err", err)
			c.closeWith(0, "")
			return
		}
		if window > 0 {
			lastWrite = time.Now()
		}
	}
}

// writeItems writes q as frames: consecutive event batches are packed into
// events frames of at most maxFrame events; control frames go alone, in order.
// Batches are shared with other clients' queues, so they are only read:
// several are joined in the writer's own slice, and a batch that makes a
// frame on its own is sent as its shared frame.
func (c *conn) writeItems(buf []byte, q []item) ([]byte, error) {
	if len(q) == 1 && q[0].batch != nil && len(q[0].batch.evs) <= maxFrame {
		b := q[0].batch
		if err := c.write(b.sharedFrame()); err != nil {
			return buf, err
		}
		c.g.stats.delivered.Add(int64(len(b.evs)))
		return buf, nil
	}
	var pending [][]byte
	owned := c.joined[:0]
	flush := func() error {
		for len(pending) > 0 {
			n := min(len(pending), maxFrame)
			buf = appendEventsFrame(buf[:0], pending[:n])
			if err := c.write(buf); err != nil {
				return err
			}
			c.g.stats.delivered.Add(int64(n))
			pending = pending[n:]
		}
		return nil
	}
	for _, it := range q {
		if it.ctl != nil {
			if err := flush(); err != nil {
				return buf, err
			}
			if err := c.write(it.ctl); err != nil {
				return buf, err
			}
			continue
		}
		evs := it.batch.evs
		switch {
		case len(pending) == 0:
			pending = evs
		case len(owned) == 0 || &owned[0] != &pending[0]:
			owned = append(append(owned[:0], pending...), evs...)
			pending = owned
		default:
			owned = append(owned, evs...)
			pending = owned
		}
	}
	err := flush()
	clear(owned)
	c.joined = owned[:0]
	return buf, err
}

func (c *conn) write(frame []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// closeWith starts closing the connection, once. With a code it sends that
// close frame and gives the client closeGrace to answer before the reader
// gives up; without one it cuts the TCP connection (the peer is gone or
// unwritable anyway).
func (c *conn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		c.g.hub.unregister(c)
		c.mu.Lock()
		c.closing = true
		c.mu.Unlock()
		close(c.done)
		c.signal()
		if code == 0 {
			_ = c.ws.NetConn().Close()
			return
		}
		msg := websocket.FormatCloseMessage(code, reason)
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(closeGrace))
		_ = c.ws.NetConn().SetReadDeadline(time.Now().Add(closeGrace))
	})
}

// readLoop runs on the ServeHTTP goroutine until the connection ends. A
// client has nothing to say but ping; anything else closes its connection
// with the matching close code, and no other connection notices.
func (c *conn) readLoop() {
	c.ws.SetReadLimit(maxClientFrame)
	_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(pongWait))
	})
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				// gorilla already sent 1009; let the client see it.
				c.closeWith(websocket.CloseMessageTooBig, "frame too large")
				c.drain()
			}
			return
		}
		f, err := parseClientFrame(mt, data)
		if err != nil {
			var fe *frameError
			if errors.As(err, &fe) {
				c.closeWith(fe.Code, fe.Reason)
			}
			c.drain()
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(pongWait))
		if f.Type == protocol.TypePing {
			c.pong()
		}
	}
}

// drain reads and discards until the client closes or closeGrace passes.
// Closing a socket with unread input makes the kernel send RST, which can
// destroy the close frame before the client reads it.
func (c *conn) drain() {
	nc := c.ws.NetConn()
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.Copy(io.Discard, nc)
}
