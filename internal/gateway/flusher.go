package gateway

import (
	"runtime"
	"sync"
	"time"
)

// flusher writes the queued frames of its share of the connections. A
// broadcast marks every client it queued to, and each flusher (one per
// processor) writes its marked clients one after another with non-blocking
// writes: a broadcast to N clients costs N write system calls and one wake-up
// per flusher, instead of N goroutine wake-ups and their scheduling, which
// on a few cores cost as much again as the writes.
//
// A client whose socket cannot take a whole frame at once is handed to its
// own writer goroutine (conn.writeLoop), which waits on that socket alone
// with a deadline and gives the client back once its queue is empty, so a
// slow client never holds a flusher.
//
// FlushWindow is kept per client: a client written less than FlushWindow ago
// stays marked until its window ends, and whatever was queued for it
// meanwhile goes out as one frame. The flusher sleeps until the earliest
// such end, one timer for all its clients.
type flusher struct {
	g    *Gateway
	wake chan struct{} // cap 1: "some connection was marked"
	stop chan struct{}

	mu     sync.Mutex
	marked []*conn // guarded by mu
	spare  []*conn // the flusher's previous slice, recycled; flusher only

	// The flusher goroutine's own state.
	waiting []*conn  // marked, but inside their window
	todo    []*conn  // this round's connections
	buf     []byte   // frame scratch
	joined  [][]byte // scratch for joining batches
}

// flushers is the gateway's set of flushers, started with the first
// connection and stopped by Close.
// Its methods run under the gateway's connMu.
type flushers struct {
	all     []*flusher
	next    int // round-robin assignment
	stopC   chan struct{}
	stopped bool
}

// start runs one flusher per processor (at most 64), once. Flushers
// started after close stop at once (a connection upgraded while the
// gateway closed is being closed too).
func (fs *flushers) start(g *Gateway) {
	if fs.all != nil {
		return
	}
	n := min(max(runtime.GOMAXPROCS(0), 1), 64)
	fs.stopC = make(chan struct{})
	if fs.stopped {
		close(fs.stopC)
	}
	for range n {
		f := &flusher{g: g, wake: make(chan struct{}, 1), stop: fs.stopC}
		fs.all = append(fs.all, f)
		go f.run()
	}
}

// assign picks the flusher of a new connection; the caller holds connMu.
func (fs *flushers) assign() *flusher {
	f := fs.all[fs.next%len(fs.all)]
	fs.next++
	return f
}

// close stops the flushers (after every connection is closed).
func (fs *flushers) close() {
	if fs.stopC != nil && !fs.stopped {
		close(fs.stopC)
	}
	fs.stopped = true
}

// add marks conns (each already flagged by its marked bit) for writing.
func (f *flusher) add(cs ...*conn) {
	f.mu.Lock()
	f.marked = append(f.marked, cs...)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *flusher) run() {
	window := f.g.opts.FlushWindow
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-f.wake:
		case <-timer.C:
		}
		f.mu.Lock()
		marked := f.marked
		f.marked = f.spare[:0]
		f.mu.Unlock()
		// The clients still inside their window go first: they have waited
		// longest.
		f.todo = append(append(f.todo[:0], f.waiting...), marked...)
		f.waiting = f.waiting[:0]
		clear(marked)
		f.spare = marked[:0]
		now := f.g.mono()
		var due int64 // earliest end of a window still open; 0: none
		for _, c := range f.todo {
			if window > 0 {
				if last := c.lastWrite.Load(); last != 0 && now-last < int64(window) {
					f.waiting = append(f.waiting, c)
					if end := last + int64(window); due == 0 || end < due {
						due = end
					}
					continue
				}
			}
			c.marked.Store(false)
			f.flush(c)
		}
		clear(f.todo)
		if due != 0 {
			timer.Reset(time.Duration(due - f.g.mono()))
		}
	}
}

// flush writes c's queue as one non-blocking write; see conn.flush.
func (f *flusher) flush(c *conn) {
	f.buf = c.flush(f.buf[:0], &f.joined)
}
