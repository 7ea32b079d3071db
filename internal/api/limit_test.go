package api

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// A million distinct addresses leave the limiter's memory bounded, and a
// heavy hitter sending among them is still held to its rate.
func TestLimiterBoundedUnderAddressFlood(t *testing.T) {
	const (
		rate, burst = 20, 40
		flood       = 1_000_000
		every       = 100 // the heavy hitter sends once per this many flood requests
		step        = 10 * time.Microsecond
	)
	l := newLimiter(rate, burst, 0)
	heavy := netip.MustParseAddr("198.51.100.7")
	before := heapInUse()
	start := l.start
	now := start
	allowed, sent := 0, 0
	var b [4]byte
	for i := range flood {
		now = now.Add(step)
		binary.BigEndian.PutUint32(b[:], uint32(0x0A000000+i)) // 10.0.0.0 upwards
		l.allowAt(netip.AddrFrom4(b), now)
		if i%every == 0 {
			sent++
			if ok, _ := l.allowAt(heavy, now); ok {
				allowed++
			}
		}
	}
	grown := int64(heapInUse()) - int64(before)
	elapsed := now.Sub(start).Seconds()
	max := burst + rate*elapsed + 1
	t.Logf("heavy hitter: %d of %d allowed over %.1fs (bound %.0f); %d buckets; heap +%.1f MiB", allowed, sent, elapsed, max, l.clients(), float64(grown)/(1<<20))
	if float64(allowed) > max {
		t.Errorf("the heavy hitter got %d writes in %.1fs, more than burst %d + %d/s", allowed, elapsed, burst, rate)
	}
	if l.clients() > defaultMaxClients {
		t.Errorf("%d buckets held, bound %d", l.clients(), defaultMaxClients)
	}
	if grown > 32<<20 {
		t.Errorf("the limiter's heap grew by %.1f MiB for a million addresses, want at most 32", float64(grown)/(1<<20))
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// Buckets refill at the rate up to the burst; an evicted bucket starts over
// full, like a new one.
func TestLimiterRefillsAndEvicts(t *testing.T) {
	l := newLimiter(2, 2, 2)
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	now := l.start
	for i := range 2 {
		if ok, _ := l.allowAt(a, now); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := l.allowAt(a, now)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("over the burst: ok=%v wait=%s, want refused for 500ms", ok, wait)
	}
	if ok, _ := l.allowAt(a, now.Add(500*time.Millisecond)); !ok {
		t.Fatal("not refilled after 1/rate")
	}
	l.allowAt(b, now)
	l.allowAt(a, now) // a is the most recent: c evicts b
	l.allowAt(c, now)
	if l.clients() != 2 {
		t.Fatalf("%d buckets, want 2", l.clients())
	}
	if _, kept := l.buckets[a]; !kept {
		t.Fatal("the most recently used bucket was evicted")
	}
}
