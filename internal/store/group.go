package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// groupCommit runs callers' requests in batches: while one batch is being
// written, the requests that arrive queue up and are written together as the
// next batch. On the embedded engine every transaction pays a fixed price
// (the write token, a copy of the catalog and the oplog, the oplog cleanup on
// commit) and every write operation copies its collection and the oplog, so
// one transaction with one update per tile and one insert for all events
// costs little more than a single placement.
//
// Batches run one at a time on a worker goroutine that stays while
// requests keep coming and ends after workerIdle without any. A goroutine
// per busy period (the first design) was a new goroutine per write at a
// steady rate, and its stack grew through lungo's deep calls, copied at
// each doubling, on every write: 2.6 % of serve's CPU at 200 writes/s,
// and on the write's path. Callers only wait, each on its own context: a
// caller whose context ends leaves at once with ctx.Err(). If its request
// was still queued it is taken out and never written; if its batch was
// already running, the outcome is unknown to that caller (as with any
// deadline that passes mid-transaction).
type groupCommit[R any] struct {
	max int             // requests per batch
	run func(batch []R) // writes one batch and answers every request in it
	mu  sync.Mutex      // guards q, busy and the waiters' states
	q   []*groupWaiter[R]
	// busy is set from the request that finds the queue idle until the
	// worker has emptied it; when it is clear, q is empty.
	busy bool
	// worker is set while the worker goroutine runs; kick (cap 1) wakes it
	// when busy is set, at most once per busy period.
	worker bool
	kick   chan struct{}
	idle   time.Duration // workerIdle; tests shorten it
}

// workerIdle is how long the worker waits for requests before it ends, so
// that an idle store holds no goroutine.
const workerIdle = 5 * time.Second

// waiter states, guarded by groupCommit.mu.
const (
	waitQueued   = iota // in q
	waitRunning         // taken into the batch that is running
	waitAnswered        // its batch has run; done is (about to be) closed
	waitLeft            // its caller left (context ended)
)

// groupWaiter is one request and how its caller learns the outcome.
type groupWaiter[R any] struct {
	req   R
	state int
	done  chan struct{} // closed once the batch holding req has run
	// panicked is what run panicked with, handed to this one caller (the
	// first still waiting in the batch) to re-raise on its own goroutine.
	panicked any
}

func newGroupCommit[R any](max int, run func(batch []R)) *groupCommit[R] {
	if max < 1 {
		max = 1
	}
	return &groupCommit[R]{max: max, run: run, kick: make(chan struct{}, 1), idle: workerIdle}
}

// do queues req and returns nil once a batch containing it has run (run
// answered req through whatever R points to), or ctx.Err() as soon as ctx
// ends first. A panic in run is re-raised in one caller of that batch.
func (g *groupCommit[R]) do(ctx context.Context, req R) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w := &groupWaiter[R]{req: req, state: waitQueued, done: make(chan struct{})}
	g.mu.Lock()
	g.q = append(g.q, w)
	if !g.busy {
		g.busy = true
		if !g.worker {
			g.worker = true
			go g.work()
		}
		g.kick <- struct{}{} // never blocks: one kick per busy period
	}
	g.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		g.mu.Lock()
		switch w.state {
		case waitQueued:
			g.q = slices.DeleteFunc(g.q, func(x *groupWaiter[R]) bool { return x == w })
			w.state = waitLeft
		case waitRunning:
			w.state = waitLeft
		}
		answered := w.state == waitAnswered
		g.mu.Unlock()
		if !answered {
			return ctx.Err()
		}
		<-w.done // answered meanwhile: take the answer, and a panic with it
	}
	if w.panicked != nil {
		panic(w.panicked)
	}
	return nil
}

// work runs busy periods as they are kicked off, and ends once it has
// been idle for workerIdle.
func (g *groupCommit[R]) work() {
	idle := time.NewTimer(g.idle)
	defer idle.Stop()
	for {
		select {
		case <-g.kick:
			g.drain()
			idle.Reset(g.idle)
		case <-idle.C:
			g.mu.Lock()
			if !g.busy { // no kick waits: end here, the next request starts another
				g.worker = false
				g.mu.Unlock()
				return
			}
			g.mu.Unlock()
			idle.Reset(g.idle)
		}
	}
}

// drain runs batches until the queue is empty.
func (g *groupCommit[R]) drain() {
	for {
		g.mu.Lock()
		if len(g.q) == 0 {
			g.busy = false
			g.q = nil
			g.mu.Unlock()
			return
		}
		n := min(len(g.q), g.max)
		batch := g.q[:n:n]
		g.q = g.q[n:]
		for _, w := range batch {
			w.state = waitRunning
		}
		g.mu.Unlock()
		g.runBatch(batch)
	}
}

// runBatch runs one batch and wakes its callers even if run panics, so
// that no caller waits forever (unanswered requests keep their default
// answer); the panic goes to the first caller still waiting, or, when all
// have left, brings the process down as any unrecovered panic would.
func (g *groupCommit[R]) runBatch(batch []*groupWaiter[R]) {
	var p any
	func() {
		defer func() { p = recover() }()
		reqs := make([]R, len(batch))
		for i, w := range batch {
			reqs[i] = w.req
		}
		g.run(reqs)
	}()
	g.mu.Lock()
	taken := p == nil
	for _, w := range batch {
		if w.state == waitLeft {
			continue
		}
		w.state = waitAnswered
		if !taken {
			w.panicked, taken = p, true
		}
	}
	g.mu.Unlock()
	for _, w := range batch {
		close(w.done)
	}
	if !taken {
		panic(p)
	}
}
