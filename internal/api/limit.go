package api

import (
	"net/netip"
	"sync"
	"time"
)

// limiter keeps one token bucket per client key (an IPv4 address or an
// IPv6 /64, see clientip.Key) in a table of at most max buckets, so its
// memory is bounded whatever the number of distinct addresses thrown at it.
//
// When the table is full the least recently used bucket is recycled for
// the newcomer. Forgetting a bucket is harmless once it has refilled (a
// new bucket starts full, exactly like it); what is lost is only the
// debt of a client that has not been seen for a whole table's worth of
// other clients. A client at its limit keeps its bucket at the front by
// its own requests, so a flood of one-off addresses cannot launder it
// unless it brings more than max new addresses between two of its
// requests.
type limiter struct {
	rate  float64 // tokens per second
	burst float64
	max   int
	start time.Time // the clock's origin; bucket times are offsets from it

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	// head is the most recently used bucket, head.prev the least; the list
	// is circular, so the eviction candidate is one step away.
	head *bucket
}

type bucket struct {
	key        netip.Addr
	tokens     float64
	at         time.Duration // last refill, since limiter.start
	prev, next *bucket
}

// defaultMaxClients bounds the table: about 210 bytes a bucket (measured),
// 14 MiB in all.
const defaultMaxClients = 65536

func newLimiter(perSec float64, burst, maxClients int) *limiter {
	if maxClients <= 0 {
		maxClients = defaultMaxClients
	}
	return &limiter{rate: perSec, burst: float64(burst), max: maxClients, start: time.Now(),
		buckets: make(map[netip.Addr]*bucket, min(maxClients, 1024))}
}

// allow takes one token for key, or says how long until one is available.
func (l *limiter) allow(key netip.Addr) (bool, time.Duration) {
	return l.allowAt(key, time.Now())
}

func (l *limiter) allowAt(key netip.Addr, now time.Time) (bool, time.Duration) {
	t := now.Sub(l.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[key]
	switch {
	case b != nil:
		b.tokens = min(l.burst, b.tokens+(t-b.at).Seconds()*l.rate)
		b.at = t
		l.touch(b)
	case len(l.buckets) < l.max:
		b = &bucket{key: key, tokens: l.burst, at: t}
		l.buckets[key] = b
		l.push(b)
	default: // full: recycle the least recently used bucket
		b = l.head.prev
		delete(l.buckets, b.key)
		b.key, b.tokens, b.at = key, l.burst, t
		l.buckets[key] = b
		l.head = b
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// push puts a new bucket at the front.
func (l *limiter) push(b *bucket) {
	if l.head == nil {
		b.prev, b.next = b, b
	} else {
		b.next, b.prev = l.head, l.head.prev
		b.prev.next, b.next.prev = b, b
	}
	l.head = b
}

// touch moves b to the front.
func (l *limiter) touch(b *bucket) {
	if l.head == b {
		return
	}
	b.prev.next, b.next.prev = b.next, b.prev
	l.push(b)
}

// clients is the number of buckets held.
func (l *limiter) clients() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
