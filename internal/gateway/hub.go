package gateway

import (
	"cmp"
	"slices"
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
//
// Clients of the whole canvas are one set; region clients are indexed by
// region (byRegion), so a broadcast touches only the clients whose regions
// its events are in, not every client: that is what makes a region
// delivery cheaper than a whole-canvas one, not only smaller.
type hub struct {
	mu       sync.Mutex
	pos      canvas.Position
	whole    map[*conn]struct{}
	regional map[*conn]struct{}
	byRegion map[canvas.Region]map[*conn]struct{}
	queueLen int
	stats    *counters

	round   uint64  // broadcasts to region clients so far (conn.round)
	touched []*conn // scratch of broadcastRegions
}

func newHub(queueLen int, stats *counters) *hub {
	return &hub{whole: make(map[*conn]struct{}), regional: make(map[*conn]struct{}),
		byRegion: make(map[canvas.Region]map[*conn]struct{}), queueLen: queueLen, stats: stats}
}

// register adds c, with the regions it asked for at connect time (see
// conn.view), and returns the position it starts after.
func (h *hub) register(c *conn) canvas.Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.index(c)
	return h.pos
}

// index adds c to the sets its view names; the caller holds mu.
func (h *hub) index(c *conn) {
	if !c.view.regional {
		h.whole[c] = struct{}{}
		return
	}
	h.regional[c] = struct{}{}
	for _, r := range c.view.regions {
		set := h.byRegion[r]
		if set == nil {
			set = make(map[*conn]struct{})
			h.byRegion[r] = set
		}
		set[c] = struct{}{}
	}
}

// unindex removes c from every set; the caller holds mu.
func (h *hub) unindex(c *conn) {
	delete(h.whole, c)
	if _, ok := h.regional[c]; !ok {
		return
	}
	delete(h.regional, c)
	for _, r := range c.view.regions {
		if set := h.byRegion[r]; set != nil {
			delete(set, c)
			if len(set) == 0 {
				delete(h.byRegion, r)
			}
		}
	}
}

func (h *hub) unregister(c *conn) {
	h.mu.Lock()
	h.unindex(c)
	h.mu.Unlock()
}

// change applies a subscribe or unsubscribe of c and queues its
// acknowledgement, under the lock that orders broadcasts: every entry
// broadcast after the acknowledged position is filtered by the new view.
// An error is the client's fault (outside the canvas, too many regions, a
// flood of changes) and closes its connection.
func (h *hub) change(c *conn, size canvas.Size, sub clientFrame) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	next, err := c.view.apply(size, sub)
	if err != nil {
		return err
	}
	h.unindex(c)
	c.view = next
	h.index(c)
	if next.regional {
		c.filtered.Store(true)
	}
	return c.acknowledge(encodeSubscribed(h.pos, next))
}

// RegionCount is how many clients of a gateway hold one region.
type RegionCount struct {
	Region  canvas.Region `json:"region"`
	Clients int           `json:"clients"`
}

// topRegions bounds Stats.TopRegions.
const topRegions = 16

// regionCounts returns the number of region clients, of regions held
// over all of them, and the most held regions.
func (h *hub) regionCounts() (clients, subscriptions int, top []RegionCount) {
	h.mu.Lock()
	for r, set := range h.byRegion {
		top = append(top, RegionCount{Region: r, Clients: len(set)})
		subscriptions += len(set)
	}
	clients = len(h.regional)
	h.mu.Unlock()
	slices.SortFunc(top, func(a, b RegionCount) int { return cmp.Or(b.Clients-a.Clients, int(a.Region)-int(b.Region)) })
	return clients, subscriptions, top[:min(len(top), topRegions)]
}

// snapshot returns the position and the number of clients.
func (h *hub) snapshot() (canvas.Position, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pos, len(h.whole) + len(h.regional)
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
	for c := range h.whole {
		h.deliver(c, b, &resync)
	}
	if len(h.regional) > 0 {
		h.broadcastRegions(b, &resync)
	}
	return from
}

// deliver queues b to c, or degrades c when its queue would overflow; the
// caller holds mu.
func (h *hub) deliver(c *conn, b *batch, resync *resyncFrames) {
	if c.enqueue(b, h.queueLen) {
		c.mark()
		return
	}
	h.stats.degraded.Add(1)
	h.stats.resyncs.Add(1)
	c.resync(resync.frame(c.format), resync.pos.Seq)
}

// broadcastRegions queues to each region client the events of b inside its
// regions (and every canary), visiting only the clients of the regions b
// touches. A client given one event, or all of them, shares its batch
// with every other such client; only a client hit by several but not all
// events gets a batch of its own. The caller holds mu.
func (h *hub) broadcastRegions(b *batch, resync *resyncFrames) {
	h.round++
	touched := h.touched[:0]
	hit := func(c *conn, i int) {
		if c.round != h.round {
			c.round, c.hits = h.round, c.hits[:0]
			touched = append(touched, c)
		}
		c.hits = append(c.hits, i)
	}
	for i := range b.evs {
		e := &b.evs[i]
		if e.canary {
			for c := range h.regional {
				hit(c, i)
			}
			continue
		}
		for c := range h.byRegion[canvas.RegionOf(e.gx, e.gy)] {
			hit(c, i)
		}
	}
	var single []*batch // by event index, built on first need
	for _, c := range touched {
		sub := b
		switch n := len(c.hits); {
		case n == len(b.evs):
		case n == 1:
			if single == nil {
				single = make([]*batch, len(b.evs))
			}
			i := c.hits[0]
			if single[i] == nil {
				single[i] = newBatch(b.evs[i].seq, b.evs[i:i+1])
			}
			sub = single[i]
		default:
			evs := make([]wireEvent, n)
			for j, i := range c.hits {
				evs[j] = b.evs[i]
			}
			sub = newBatch(evs[0].seq, evs)
		}
		h.deliver(c, sub, resync)
	}
	clear(touched)
	h.touched = touched[:0]
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
	for _, set := range [2]map[*conn]struct{}{h.whole, h.regional} {
		for c := range set {
			h.stats.resyncs.Add(1)
			c.resync(frames.frame(c.format), pos.Seq)
		}
	}
}
