package main

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/pace"
)

// pacedWrites places total random pixels of the region×region corner on
// base at rate a second, recorded in rec, with no retries (a fault must
// not fail a write). seed picks the pixels. Its result arrives on done
// when the last write was answered.
type pacedWrites struct {
	w    *cluster.Writer
	done chan pace.Result
}

func startPacedWrites(ctx context.Context, base string, rec *history.Recorder, region, rate, total int, seed uint64) *pacedWrites {
	// Enough workers that a write is shed only when answers take longer
	// than 64/rate seconds: on a loaded machine (CI saw a test wait for
	// 250 acknowledged writes while most of 800 were shed behind 8
	// workers) the waits below would otherwise never be met.
	const workers = 64
	p := &pacedWrites{w: cluster.NewWriter(base, rec, region), done: make(chan pace.Result, 1)}
	p.w.Retries = 0
	go func() {
		rngs := make([]*rand.Rand, workers)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), seed))
		}
		p.done <- pace.Pacer{Rate: rate, Total: total, Workers: workers}.Run(ctx, func(i int, _ time.Time) { p.w.PlaceRandom(ctx, rngs[i]) })
	}()
	return p
}

// waitAcked waits until n writes were acknowledged; it fails t when ctx
// ends first.
func (p *pacedWrites) waitAcked(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	for p.w.Acked() < n {
		if ctx.Err() != nil {
			t.Fatalf("only %d writes acknowledged, want %d", p.w.Acked(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
