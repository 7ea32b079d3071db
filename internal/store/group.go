package store

import "sync"

// groupCommit runs callers' requests in batches: while one batch is being
// written, the requests that arrive queue up and are written together as the
// next batch. On the embedded engine every transaction pays a fixed price
// (the write token, a copy of the catalog and the oplog, the oplog cleanup on
// commit) and every write operation copies its collection and the oplog, so
// one transaction with one update per tile and one insert for all events
// costs little more than a single placement.
//
// There is no background goroutine: the caller that finds no batch running
// leads, writes one batch (its own request and whatever queued before it),
// and hands the lead to the first request still queued, so no caller waits
// for more than the batch in flight and its own.
type groupCommit[R any] struct {
	max int               // requests per batch
	run func(batch []R)   // writes one batch and answers every request in it
	mu  sync.Mutex        // guards queue and busy
	q   []*groupWaiter[R] // requests waiting for a batch, oldest first
	// busy is set while some caller leads; when it is clear, q is empty.
	busy bool
}

// groupWaiter is one queued request and how its caller is woken: once, either
// answered (lead false) or promoted to lead the next batch.
type groupWaiter[R any] struct {
	req  R
	wake chan struct{}
	lead bool
}

func newGroupCommit[R any](max int, run func(batch []R)) *groupCommit[R] {
	if max < 1 {
		max = 1
	}
	return &groupCommit[R]{max: max, run: run}
}

// do queues req and returns once a batch containing it has been run. run must
// answer req (through whatever R points to) before it returns.
func (g *groupCommit[R]) do(req R) {
	w := &groupWaiter[R]{req: req, wake: make(chan struct{}, 1)}
	g.mu.Lock()
	g.q = append(g.q, w)
	if g.busy {
		g.mu.Unlock()
		<-w.wake
		if !w.lead {
			return
		}
		g.mu.Lock()
	}
	g.busy = true
	// w is at the front: either the queue was empty (busy was clear) or the
	// previous leader promoted the front request.
	n := min(len(g.q), g.max)
	batch := g.q[:n:n]
	g.q = g.q[n:]
	g.mu.Unlock()

	// Wake the others and hand the lead on even if run panics, so that no
	// caller waits forever; unanswered requests keep their default answer.
	defer func() {
		for _, b := range batch {
			if b != w {
				b.wake <- struct{}{}
			}
		}
		g.mu.Lock()
		if len(g.q) > 0 {
			g.q[0].lead = true
			g.q[0].wake <- struct{}{}
		} else {
			g.busy = false
			g.q = nil
		}
		g.mu.Unlock()
	}()
	reqs := make([]R, len(batch))
	for i, b := range batch {
		reqs[i] = b.req
	}
	g.run(reqs)
}
