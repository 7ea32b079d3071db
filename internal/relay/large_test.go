//go:build !race

// The large-backlog test drains 10,000 events through claims of 100 on the
// embedded store: minutes under the race detector, seconds without. make
// test runs it in its own step without -race (see the Makefile).
package relay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
)

// boundedOutbox records the largest claim the relay made (alone or folded
// with the mark of the one before).
type boundedOutbox struct {
	*store.Store
	mu       sync.Mutex
	maxClaim int
}

func (b *boundedOutbox) Claim(ctx context.Context, holder string, term int64, at canvas.Position, limit int) (store.Claim, []canvas.Event, error) {
	c, evs, err := b.Store.Claim(ctx, holder, term, at, limit)
	b.mu.Lock()
	b.maxClaim = max(b.maxClaim, len(evs))
	b.mu.Unlock()
	return c, evs, err
}

func (b *boundedOutbox) MarkAndClaim(ctx context.Context, holder string, term int64, from canvas.Position, c store.Claim, at time.Time, limit int) (store.Claim, []canvas.Event, error) {
	next, evs, err := b.Store.MarkAndClaim(ctx, holder, term, from, c, at, limit)
	b.mu.Lock()
	b.maxClaim = max(b.maxClaim, len(evs))
	b.mu.Unlock()
	return next, evs, err
}

// TestLargeBacklogDrainsInBoundedSteps is issue 12 item 4: with Redis down
// for the whole build-up of a 10,000-event backlog and a claim bound of 100,
// the relay drains it without a new epoch and never claims more than 100.
func TestLargeBacklogDrainsInBoundedSteps(t *testing.T) {
	e := newEnvWith(t, true, store.Options{GroupCommit: 64})
	out := &boundedOutbox{Store: e.store}
	r, err := relay.New(out, e.st, relay.Options{Holder: "r", ClaimLimit: 100, PollInterval: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	first := e.write(10)
	e.waitDrained(5 * time.Second)
	e.srv.Kill()
	const n = 10_000
	var mu sync.Mutex
	ids := first
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				ev, _, err := e.store.Place(context.Background(), canvas.Placement{GX: i % 64, GY: (i / 64) % 64, Color: canvas.Color(i)}, "", store.Trace{})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, ev.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if b, _, _ := e.store.Backlog(ctx); b != n {
		t.Fatalf("backlog %d with Redis down, want %d", b, n)
	}
	if err := e.srv.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.waitDrained(60 * time.Second)
	took := time.Since(start)
	e.checkExactlyOnce(ids)
	if st := r.Status(); st.EpochChanges != 1 {
		t.Fatalf("epoch changes %d, want 1 (the first start only)", st.EpochChanges)
	}
	if out.maxClaim > 100 {
		t.Fatalf("largest claim %d events, bound 100", out.maxClaim)
	}
	t.Logf("drained %d events in %s (%.0f events/s, includes Redis restart and backoff) with claims of at most %d", n, took.Round(time.Millisecond), n/took.Seconds(), out.maxClaim)
}
