package gateway

import (
	"sync"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// hub is the set of connected clients and the position of the last entry
// broadcast to them. Its lock orders everything that must be ordered: a
// client registered under it is given the position at that instant and
// receives exactly the entries broadcast after it, so nothing falls between
// a hello and the live stream.
//
// The hub never blocks on a client: broadcasting is one append to each
// client's queue, and a queue that would overflow is replaced by a resync.
type hub struct {
	mu       sync.Mutex
	pos      canvas.Position
	clients  map[*conn]struct{}
	queueLen int
	stats    *counters
}

func newHub(queueLen int, stats *counters) *hub {
	return &hub{clients: make(map[*conn]struct{}), queueLen: queueLen, stats: stats}
}

// register adds c and returns the position it starts after.
func (h *hub) register(c *conn) canvas.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients[c] = struct{}{}
	return h.pos
}

func (h *hub) unregister(c *conn) {
	h.mu.Lock()
	delete(h.clients, c)
	h.mu.Unlock()
}

// snapshot returns the position and the number of clients.
func (h *hub) snapshot() (canvas.Position, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos, len(h.clients)
}

func (h *hub) position() canvas.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos
}

// broadcast queues evs (encoded entries with contiguous sequence numbers,
// the last being last) to every client and advances the position. The
// slice is shared by all queues and must not be modified afterwards.
func (h *hub) broadcast(evs [][]byte, last uint64) {
	if len(evs) == 0 {
		return
	}
	// Encoded once, outside the lock; framed once, by the first flusher
	// that finds only this batch in a queue (see batch).
	b := newBatch(evs)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pos.Seq = last
	// Counted before queuing, so no client can see an event the counters
	// do not show yet.
	h.stats.broadcast.Add(int64(len(evs)))
	var resync []byte // built once, only if some client overflows
	for c := range h.clients {
		if c.enqueue(b, h.queueLen) {
			c.mark()
			continue
		}
		if resync == nil {
			resync = textFrame(encodeResync(protocol.ReasonSlow, h.pos))
		}
		h.stats.degraded.Add(1)
		h.stats.resyncs.Add(1)
		c.resync(resync)
	}
}

// resync moves the position to pos and tells every client to reload its
// snapshot: entries up to pos cannot be delivered (another epoch, or gone
// from the stream), entries after it will be. Nothing happens when the
// position does not change.
func (h *hub) resync(reason string, pos canvas.Position) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if pos == h.pos {
		return
	}
	h.pos = pos
	frame := textFrame(encodeResync(reason, pos))
	for c := range h.clients {
		h.stats.resyncs.Add(1)
		c.resync(frame)
	}
}
