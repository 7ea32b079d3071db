package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/relay"
)

// scriptedWatch is an outbox whose change stream fails at once for the
// first `failing` watches, then works (one wake-up) and fails, then works
// until the test ends.
type scriptedWatch struct {
	relay.Outbox
	failing int
	mu      sync.Mutex
	calls   int
}

func (s *scriptedWatch) WatchOutbox(ctx context.Context) (<-chan struct{}, <-chan error) {
	s.mu.Lock()
	s.calls++
	n := s.calls
	s.mu.Unlock()
	wake, errc := make(chan struct{}), make(chan error, 1)
	switch {
	case n <= s.failing:
		errc <- errors.New("change stream: connection refused")
	case n == s.failing+1:
		go func() {
			select { // the wake-up first, then the failure
			case wake <- struct{}{}:
				errc <- errors.New("change stream: cursor killed")
			case <-ctx.Done():
			}
		}()
	}
	return wake, errc
}

// TestWatchBackoffStartsOverAfterAWorkingStream: after a long outage of the
// outbox change stream, then a stream that worked, the next failure is
// retried after MinBackoff, not after the outage's grown delay (with 1 ms
// doubling ten times, ≥ 512 ms, during which inserts wait for the poll).
func TestWatchBackoffStartsOverAfterAWorkingStream(t *testing.T) {
	const failing = 10
	out := &scriptedWatch{failing: failing}
	r, err := relay.New(out, nil, relay.Options{Holder: "r", MinBackoff: time.Millisecond, MaxBackoff: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	delays := make(chan time.Duration, 100)
	wake := relay.WatchWithSleep(ctx, r, func(ctx context.Context, d time.Duration) { delays <- d })
	var got []time.Duration
	for len(got) < failing+1 {
		select {
		case d := <-delays:
			got = append(got, d)
		case <-ctx.Done():
			t.Fatalf("the watcher stopped retrying after %d delays %v", len(got), got)
		}
	}
	select {
	case <-wake:
	default:
		t.Fatal("the working stream's wake-up did not reach the relay")
	}
	if last := got[failing-1]; last < 256*time.Millisecond {
		t.Fatalf("the outage's delays did not grow (the scenario is wrong): %v", got)
	}
	if d := got[failing]; d > time.Millisecond {
		t.Fatalf("after a working stream the next failure waited %s, want ≤ MinBackoff (1ms): delays %v", d, got)
	}
}
