package store

import (
	"runtime"
	"sync"
	"testing"
)

// TestGroupCommitBatchesWhatQueuedMeanwhile holds the first batch open until
// nine more requests have queued behind it: they must be written together as
// the second batch, and every request answered exactly once.
func TestGroupCommitBatchesWhatQueuedMeanwhile(t *testing.T) {
	type req struct{ id, answered int }
	release := make(chan struct{})
	var batches [][]int
	var g *groupCommit[*req]
	g = newGroupCommit(64, func(batch []*req) {
		ids := make([]int, len(batch))
		for i, r := range batch {
			ids[i] = r.id
			r.answered++
		}
		batches = append(batches, ids) // only the leader runs, one at a time
		if len(batches) == 1 {
			<-release
		}
	})
	reqs := make([]*req, 10)
	for i := range reqs {
		reqs[i] = &req{id: i}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); g.do(reqs[0]) }()
	waitFor(t, g, func() bool { return g.busy })
	for _, r := range reqs[1:] {
		wg.Add(1)
		go func() { defer wg.Done(); g.do(r) }()
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
	if g.busy || len(g.q) != 0 {
		t.Fatalf("after all returned: busy=%v queued=%d", g.busy, len(g.q))
	}
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
		go func() { defer wg.Done(); g.do(&i) }()
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
	release := make(chan struct{})
	calls := 0
	g := newGroupCommit(64, func(batch []*int) {
		calls++
		if calls == 1 {
			<-release
			panic("boom")
		}
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer func() { _ = recover() }()
		g.do(new(int))
	}()
	waitFor(t, g, func() bool { return g.busy })
	for range 5 {
		wg.Add(1)
		go func() { defer wg.Done(); g.do(new(int)) }()
	}
	waitFor(t, g, func() bool { return len(g.q) == 5 })
	close(release)
	wg.Wait()
	if calls != 2 {
		t.Fatalf("run called %d times, want 2 (the panicking batch, then the queued one)", calls)
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
