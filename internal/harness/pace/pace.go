// Package pace schedules the writes of the end-to-end suites, the chaos
// drills and the load test: one loop for all three, open-loop at a rate or
// closed-loop back to back.
package pace

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Pacer schedules writes on Workers goroutines.
//
// With Rate > 0 it is open-loop: write i is due at start + i/Rate whatever
// the answers to earlier writes, so a slow server cannot hide its latency;
// a write due while every worker is busy is shed (counted) and the
// schedule keeps its clock. With Rate 0 it is closed-loop: each worker
// starts its next write when its last one returned.
//
// It stops after Total writes (0: no bound) or when ctx ends, and returns
// once the writes in flight have finished; write itself decides which
// context those run under.
type Pacer struct {
	Rate    int // writes per second; 0: back to back
	Total   int // writes to schedule; 0: until ctx ends
	Workers int // writes at once (default 1)
	// Every, when set, is called on the scheduling goroutine about once a
	// second, with the writes then in flight (progress lines).
	Every func(now time.Time, inFlight int)
}

// Result counts what a Run scheduled.
type Result struct {
	Sent, Shed int
	Elapsed    time.Duration
}

type job struct {
	due time.Time
}

// Run schedules writes until Total or ctx ends. write runs on worker
// number worker (0..Workers-1, so a worker can keep state of its own, such
// as a random source) with the time the write was due.
func (p Pacer) Run(ctx context.Context, write func(worker int, due time.Time)) Result {
	workers := max(p.Workers, 1)
	// Open-loop hands a job only to a free worker (busy < workers), so a
	// buffer of workers never blocks; closed-loop hands one over only when
	// a worker is ready to take it.
	jobs := make(chan job)
	if p.Rate > 0 {
		jobs = make(chan job, workers)
	}
	var busy atomic.Int64
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if p.Rate == 0 && ctx.Err() != nil {
					busy.Add(-1) // closed-loop: nothing starts after the end
					continue
				}
				write(i, j.due)
				busy.Add(-1)
			}
		}()
	}
	start := time.Now()
	var res Result
	nextTick := start.Add(time.Second)
	tick := func() {
		if p.Every == nil {
			return
		}
		if now := time.Now(); !now.Before(nextTick) {
			p.Every(now, int(busy.Load()))
			nextTick = nextTick.Add(time.Second)
		}
	}
	var interval time.Duration
	if p.Rate > 0 {
		interval = time.Second / time.Duration(p.Rate)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; (p.Total == 0 || i < p.Total) && ctx.Err() == nil; i++ {
		due := time.Now()
		if p.Rate > 0 {
			due = start.Add(time.Duration(i) * interval)
			if wait := time.Until(due); wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
				case <-timer.C:
				}
			}
		}
		if ctx.Err() != nil {
			break // nothing is sent after the end, even when its time came too
		}
		tick()
		if p.Rate > 0 {
			if busy.Load() >= int64(workers) {
				res.Shed++
				continue
			}
			busy.Add(1)
			jobs <- job{due: due} // never blocks: at most workers jobs are out
		} else {
			busy.Add(1)
			select {
			case jobs <- job{due: due}:
			case <-ctx.Done():
				busy.Add(-1)
				continue
			}
		}
		res.Sent++
	}
	close(jobs)
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
