// Package backoff is exponential backoff with jitter, shared by the workers
// that retry Redis and the store, so processes that lost a dependency
// together do not retry in lockstep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff counts consecutive failures. The zero value is ready to use.
type Backoff struct{ n int }

// Reset forgets the failures after a success.
func (b *Backoff) Reset() { b.n = 0 }

// Next returns the delay before the next attempt: lo·2ⁿ capped at hi, of which
// a random half is jitter.
func (b *Backoff) Next(lo, hi time.Duration) time.Duration {
	d := lo << min(b.n, 16)
	if d > hi || d <= 0 {
		d = hi
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx ends.
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
