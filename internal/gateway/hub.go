package gateway

import (
	"sync"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
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

// broadcast queues entries, first, first+1, … of epoch, to every client
// and advances the position past them. It returns the index
// of the first entry it queued: entries the position already covers are
// skipped, and all of evs are refused (len(evs)) when they are of another
// epoch or would leave a gap. Two sources feed the hub: the consumer loop,
// which alone moves the position to another epoch or past a hole, and a
// relay in the same process handing over what it is about to append
// (Gateway.Offer), which can only be early. What the wire needs of them is
// copied, so the caller may reuse entries afterwards.
func (h *hub) broadcast(epoch string, first uint64, entries []stream.Entry) int {
	if len(entries) == 0 {
		return 0
	}
	// Copied once, outside the lock; encoded once per format in use and
	// framed once, by the first flusher that needs it (see batch).
	evs := toWireAll(entries)
	b := newBatch(first, evs)
	h.mu.Lock()
	defer h.mu.Unlock()
	if epoch != h.pos.Epoch || first > h.pos.Seq+1 {
		return len(evs)
	}
	from := int(h.pos.Seq + 1 - first)
	if from >= len(evs) {
		return len(evs)
	}
	if from > 0 { // the other source took some of them meanwhile
		b = newBatch(first+uint64(from), evs[from:])
	}
	h.pos.Seq = first + uint64(len(evs)) - 1
	// Counted before queuing, so no client can see an event the counters
	// do not show yet.
	h.stats.broadcast.Add(int64(len(evs) - from))
	// Built once per encoding, only if some client overflows.
	resync := resyncFrames{reason: protocol.ReasonSlow, pos: h.pos}
	for c := range h.clients {
		if c.enqueue(b, h.queueLen) {
			c.mark()
			continue
		}
		h.stats.degraded.Add(1)
		h.stats.resyncs.Add(1)
		c.resync(resync.frame(c.format))
	}
	return from
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
	frames := resyncFrames{reason: reason, pos: pos}
	for c := range h.clients {
		h.stats.resyncs.Add(1)
		c.resync(frames.frame(c.format))
	}
}
