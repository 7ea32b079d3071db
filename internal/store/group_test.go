package store

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestGroupCommitBatchesWhatQueuedMeanwhile holds the first batch open until
// nine more requests have queued behind it: they must be written together as
// the second batch, and every request answered exactly once.
func TestGroupCommitBatchesWhatQueuedMeanwhile(t *testing.T) {
	type req struct{ id, answered int }
	started, release := make(chan struct{}), make(chan struct{})
	var batches [][]int
	g := newGroupCommit(64, func(batch []*req) {
		ids := make([]int, len(batch))
		for i, r := range batch {
			ids[i] = r.id
			r.answered++
		}
		batches = append(batches, ids) // batches run one at a time
		if len(batches) == 1 {
			close(started)
			<-release
		}
	})
	reqs := make([]*req, 10)
	for i := range reqs {
		reqs[i] = &req{id: i}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.do(context.Background(), reqs[0]) }()
	// Wait for the first batch to be running, not merely for busy: busy is
	// set when the runner is started, before it takes its first batch, and
	// requests queued in between would join that batch.
	<-started
	for _, r := range reqs[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); _ = g.do(context.Background(), r) }()
	}
	waitFor(t, g, func() bool { return len(g.q) == 9 })
	close(release)
	wg.Wait()
	if len(batches) != 2 || len(batches[0]) != 1 || batches[0][0] != 0 || len(batches[1]) != 9 {
		t.Fatalf("batches %v, want [[0] [the other nine]]", batches)
	}
	for _, r := range reqs {
		if r.answered != 1 {
			t.Fatalf("request %d answered %d times", r.id, r.answered)
		}
	}
	// The batch runner ends once the queue is empty (it clears busy after
	// waking the last callers, so read it under the lock as it settles).
	waitFor(t, g, func() bool { return !g.busy && len(g.q) == 0 })
}

// TestGroupCommitRespectsMax checks that no batch is larger than max and that
// every request is in exactly one batch, under contention.
func TestGroupCommitRespectsMax(t *testing.T) {
	var mu sync.Mutex
	seen := map[int]int{}
	biggest := 0
	g := newGroupCommit(3, func(batch []*int) {
		mu.Lock()
		defer mu.Unlock()
		biggest = max(biggest, len(batch))
		for _, r := range batch {
			seen[*r]++
		}
	})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = g.do(context.Background(), &i) }()
	}
	wg.Wait()
	if biggest > 3 || biggest < 1 {
		t.Fatalf("largest batch %d, want 1..3", biggest)
	}
	for i := range 200 {
		if seen[i] != 1 {
			t.Fatalf("request %d was in %d batches", i, seen[i])
		}
	}
}

// TestGroupCommitSurvivesPanic: a batch that panics must still release the
// callers queued with it and hand the lead on, or they would wait forever.
func TestGroupCommitSurvivesPanic(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	calls := 0
	g := newGroupCommit(64, func(batch []*int) {
		calls++
		if calls == 1 {
			close(started)
			<-release
			panic("boom")
		}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { _ = recover() }()
		_ = g.do(context.Background(), new(int))
	}()
	<-started // the first batch runs (busy alone is set before it is taken)
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = g.do(context.Background(), new(int)) }()
	}
	waitFor(t, g, func() bool { return len(g.q) == 5 })
	close(release)
	wg.Wait()
	if calls != 2 {
		t.Fatalf("run called %d times, want 2 (the panicking batch, then the queued one)", calls)
	}
}

// TestGroupCommitHonoursTheCallersContext: while a batch is held open, a
// caller queued behind it whose context ends gets ctx.Err() at once and is
// not written later; a caller whose request is in the running batch also
// returns at once; the others are answered when the batch completes.
func TestGroupCommitHonoursTheCallersContext(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var ran [][]int
	g := newGroupCommit(64, func(batch []*int) {
		ids := make([]int, len(batch))
		for i, r := range batch {
			ids[i] = *r
		}
		mu.Lock()
		ran = append(ran, ids)
		first := len(ran) == 1
		mu.Unlock()
		if first {
			<-release
		}
	})
	inFlightCtx, cancelInFlight := context.WithCancel(context.Background())
	queuedCtx, cancelQueued := context.WithCancel(context.Background())
	result := func(ctx context.Context, id int) <-chan error {
		c := make(chan error, 1)
		go func() { c <- g.do(ctx, &id) }()
		return c
	}
	inFlight := result(inFlightCtx, 1)
	waitFor(t, g, func() bool { return g.busy && len(g.q) == 0 })
	queued := result(queuedCtx, 2)
	stays := result(context.Background(), 3)
	waitFor(t, g, func() bool { return len(g.q) == 2 })

	returns := func(name string, c <-chan error, want error) {
		t.Helper()
		select {
		case err := <-c:
			if !errors.Is(err, want) {
				t.Fatalf("%s: %v, want %v", name, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: still waiting on the batch in flight after its context ended", name)
		}
	}
	cancelQueued()
	returns("queued caller", queued, context.Canceled)
	cancelInFlight()
	returns("caller in the running batch", inFlight, context.Canceled)
	select {
	case err := <-stays:
		t.Fatalf("a caller with a live context returned before its batch ran: %v", err)
	default:
	}
	close(release)
	returns("caller with a live context", stays, nil)
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 2 || len(ran[1]) != 1 || ran[1][0] != 3 {
		t.Fatalf("batches %v, want [[1] [3]]: the queued caller that left must not be written", ran)
	}
}

// TestGroupCommitRefusesAnEndedContext: a caller whose context already
// ended queues nothing.
func TestGroupCommitRefusesAnEndedContext(t *testing.T) {
	called := false
	g := newGroupCommit(8, func([]*int) { called = true })
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.do(ctx, new(int)); !errors.Is(err, context.Canceled) {
		t.Fatalf("do with an ended context: %v", err)
	}
	if called || g.busy || len(g.q) != 0 {
		t.Fatalf("an ended context queued work: ran=%v busy=%v queued=%d", called, g.busy, len(g.q))
	}
}

// waitFor yields until cond, read under the group's lock, holds.
func waitFor[R any](t *testing.T, g *groupCommit[R], cond func() bool) {
	t.Helper()
	for {
		g.mu.Lock()
		ok := cond()
		g.mu.Unlock()
		if ok {
			return
		}
		runtime.Gosched()
	}
}

// goroutineID is the running goroutine's number, read from its stack
// header ("goroutine 42 [running]:"). For tests only.
func goroutineID() int {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	return id
}

// TestGroupCommitKeepsOneWorker: requests one after another, each a busy
// period of its own, run on one worker goroutine, which ends once idle and
// is started again by the next request. A goroutine per busy period grew a
// fresh stack through the store's deep calls on every write at a steady
// rate (2.6 % of serve's CPU at 200 writes/s).
func TestGroupCommitKeepsOneWorker(t *testing.T) {
	var ran []int
	g := newGroupCommit(64, func(batch []*int) { ran = append(ran, goroutineID()) })
	g.idle = 200 * time.Millisecond
	for range 20 {
		if err := g.do(context.Background(), new(int)); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range ran {
		if id != ran[0] {
			t.Fatalf("batch %d ran on goroutine %d, batch 0 on %d: want one worker for all", i, id, ran[0])
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		alive := g.worker
		g.mu.Unlock()
		if !alive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker did not end after being idle")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := g.do(context.Background(), new(int)); err != nil {
		t.Fatal(err)
	}
	if len(ran) != 21 || ran[20] == ran[0] {
		t.Fatalf("after the idle end: %d batches, last on goroutine %d (first %d); want 21, on a new worker", len(ran), ran[len(ran)-1], ran[0])
	}
}
