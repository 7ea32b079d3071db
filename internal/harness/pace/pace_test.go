package pace_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/pace"
)

// Open loop: write i is due at start + i/Rate exactly, every write is
// sent once, and the run lasts at least until the last one was due. (As
// many workers as writes: a loaded machine that delays the schedule sends
// the late writes in a burst, which fewer workers would rightly shed.)
func TestOpenLoopSchedule(t *testing.T) {
	var mu sync.Mutex
	var dues []time.Time
	res := pace.Pacer{Rate: 200, Total: 60, Workers: 60}.Run(context.Background(), func(_ int, due time.Time) {
		mu.Lock()
		dues = append(dues, due)
		mu.Unlock()
	})
	if res.Sent != 60 || res.Shed != 0 || len(dues) != 60 {
		t.Fatalf("sent %d shed %d written %d, want 60, 0, 60", res.Sent, res.Shed, len(dues))
	}
	first := dues[0]
	for _, d := range dues {
		if d.Before(first) {
			first = d
		}
	}
	seen := map[time.Duration]bool{}
	for _, d := range dues {
		off := d.Sub(first)
		if off%(5*time.Millisecond) != 0 || seen[off] {
			t.Fatalf("due offset %s: not a distinct multiple of 1/200 s", off)
		}
		seen[off] = true
	}
	if min := 59 * 5 * time.Millisecond; res.Elapsed < min {
		t.Fatalf("run took %s, less than the %s until the last write was due", res.Elapsed, min)
	}
}

// Open loop sheds a write due while every worker is busy, and keeps its
// clock: one worker held until the end means one write sent, the rest shed.
func TestOpenLoopShedsWhenWorkersAreBusy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	var writes atomic.Int64
	res := pace.Pacer{Rate: 1000, Workers: 1}.Run(ctx, func(int, time.Time) {
		writes.Add(1)
		<-ctx.Done()
	})
	if res.Sent != 1 || writes.Load() != 1 || res.Shed < 1 {
		t.Fatalf("sent %d (written %d) shed %d, want 1 sent and the rest shed", res.Sent, writes.Load(), res.Shed)
	}
}

// Closed loop: exactly Total writes, never more than Workers at once, each
// worker index in range.
func TestClosedLoop(t *testing.T) {
	var now, most, n atomic.Int64
	var bad atomic.Bool
	res := pace.Pacer{Total: 50, Workers: 3}.Run(context.Background(), func(w int, _ time.Time) {
		if w < 0 || w >= 3 {
			bad.Store(true)
		}
		c := now.Add(1)
		for m := most.Load(); c > m && !most.CompareAndSwap(m, c); m = most.Load() {
		}
		time.Sleep(time.Millisecond)
		n.Add(1)
		now.Add(-1)
	})
	if res.Sent != 50 || res.Shed != 0 || n.Load() != 50 {
		t.Fatalf("sent %d shed %d written %d, want 50, 0, 50", res.Sent, res.Shed, n.Load())
	}
	if most.Load() > 3 || bad.Load() {
		t.Fatalf("%d writes at once (bad worker index: %v), want at most 3", most.Load(), bad.Load())
	}
}

// Closed loop stops when ctx ends: a worker checks before each write, so
// at most the other worker's write, already past its check, follows.
func TestClosedLoopStopsOnContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	res := pace.Pacer{Workers: 2}.Run(ctx, func(int, time.Time) {
		if n.Add(1) == 20 {
			cancel()
		}
	})
	if n.Load() < 20 || n.Load() > 21 {
		t.Fatalf("%d writes (%d sent) for a context ended at the 20th, want 20 or 21", n.Load(), res.Sent)
	}
}

// Every runs about once a second with the writes in flight.
func TestEveryTicks(t *testing.T) {
	var ticks atomic.Int64
	pace.Pacer{Rate: 100, Total: 130, Workers: 2, Every: func(time.Time, int) { ticks.Add(1) }}.Run(context.Background(), func(int, time.Time) {})
	if ticks.Load() < 1 {
		t.Fatalf("no progress tick over 1.3 s of schedule")
	}
}
