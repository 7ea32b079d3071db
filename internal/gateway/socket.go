package gateway

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// socket is the sending side of one client's connection. The gateway writes
// WebSocket frames to the TCP connection itself rather than through
// gorilla/websocket: a broadcast's frame is framed once and the same bytes go
// to every client, and a flusher (see flusher) can try a write without
// blocking, so an ordinary delivery is one write system call and no
// goroutine wake-up of its own.
//
// Writers take turns: whoever writes (a flusher, the connection's writer
// goroutine, closeWith, or gorilla writing a control frame from inside its
// reader) holds the turn for a whole frame, so no frame is ever cut by
// another. The turn has no owner, so it can be handed from one goroutine to
// another: a flusher whose write the kernel took only in part hands the
// turn, with the rest of the frame, to the connection's writer goroutine,
// and nothing else may write until that rest is out. It is a flag beside
// the descriptor, taken with one compare-and-swap, because a flusher takes
// it for every frame: as a channel (a lock of its own, on a cache line of
// its own) taking it was 4 % of serve's CPU at steady. Waiters (with a
// bound, or until the connection ends) sleep on a channel that each
// release signals while anyone waits.
type socket struct {
	nc      net.Conn        // the client's connection; nil until the upgrade
	raw     syscall.RawConn // nc's descriptor for non-blocking writes; nil if it has none
	held    atomic.Bool     // the turn: set while someone holds it
	waiters atomic.Int32    // goroutines waiting in lock or lockBy
	freed   chan struct{}   // cap 1: signalled by a release while someone waits

	// The non-blocking write's arguments and results, and the function
	// raw.Write calls, made once: a closure built per write escaped to
	// the heap, 6 % of all allocation at 1,000 writes/s. Only the turn's
	// holder uses them.
	wp    []byte
	wn    int
	werr  error
	write func(fd uintptr) bool
}

func newSocket() *socket {
	s := &socket{freed: make(chan struct{}, 1)}
	s.write = func(fd uintptr) bool {
		for {
			s.wn, s.werr = syscall.Write(int(fd), s.wp)
			if s.werr != syscall.EINTR {
				return true
			}
		}
	}
	return s
}

// lock waits for the turn, or for done to close (false).
func (s *socket) lock(done <-chan struct{}) bool {
	return s.wait(done, nil)
}

// tryLock takes the turn if nobody holds it.
func (s *socket) tryLock() bool { return s.held.CompareAndSwap(false, true) }

// lockBy waits for the turn until deadline (forever when zero).
func (s *socket) lockBy(deadline time.Time) bool {
	if s.tryLock() {
		return true
	}
	if deadline.IsZero() {
		return s.wait(nil, nil)
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	return s.wait(nil, t.C)
}

// wait takes the turn, or gives up when done closes or expired fires.
// A waiter counts itself before its last try, and unlock clears the flag
// before it looks for waiters, so a release between the two is never
// missed: either the try sees the flag clear, or unlock sees the waiter.
// A stale signal (left by a release whose waiter took the turn on its own
// try) only makes a later waiter try once more.
func (s *socket) wait(done <-chan struct{}, expired <-chan time.Time) bool {
	for {
		if s.tryLock() {
			return true
		}
		s.waiters.Add(1)
		if s.tryLock() {
			s.waiters.Add(-1)
			return true
		}
		woken := false
		select {
		case <-s.freed:
			woken = true
		case <-done:
		case <-expired:
		}
		s.waiters.Add(-1)
		if !woken {
			return false
		}
	}
}

// unlock gives the turn back and wakes a waiter, if any.
func (s *socket) unlock() {
	s.held.Store(false)
	if s.waiters.Load() > 0 {
		select {
		case s.freed <- struct{}{}:
		default:
		}
	}
}

// tryWrite writes as much of p as the kernel accepts at once, without
// waiting: n < len(p) with a nil error means the send buffer is full. The
// caller holds the turn.
func (s *socket) tryWrite(p []byte) (int, error) {
	s.wp = p
	err := s.raw.Write(s.write)
	n, werr := s.wn, s.werr
	s.wp, s.werr = nil, nil
	switch {
	case err != nil:
		return 0, err
	case errors.Is(werr, syscall.EAGAIN):
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// writeAll writes p, waiting at most until deadline. The caller holds the
// turn.
func (s *socket) writeAll(p []byte, deadline time.Time) error {
	_ = s.nc.SetWriteDeadline(deadline)
	_, err := s.nc.Write(p)
	// A deadline left behind would fail the next non-blocking write once
	// it passed.
	_ = s.nc.SetWriteDeadline(time.Time{})
	return err
}

// hijacker hands gorilla/websocket's Upgrade the client connection wrapped in
// a gorillaConn, and records the bare connection in s.
type hijacker struct {
	http.ResponseWriter
	s          *socket
	sendBuffer int
}

// Hijack implements http.Hijacker for the upgrader.
func (h hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if tc, ok := nc.(*net.TCPConn); ok && h.sendBuffer > 0 {
		_ = tc.SetWriteBuffer(h.sendBuffer)
	}
	h.s.nc = nc
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			h.s.raw = raw
		}
	}
	return &gorillaConn{Conn: nc, s: h.s}, brw, nil
}

// gorillaConn is the connection gorilla/websocket sees. It still writes
// through it: the handshake answer, and from inside its reader the pong to a
// client's protocol ping, the echo of a client's close frame, and the close
// frame of a protocol error. Each of those writes takes the turn, honouring
// the deadline gorilla set, so it lands between frames.
type gorillaConn struct {
	net.Conn
	s        *socket
	mu       sync.Mutex
	deadline time.Time // gorilla's write deadline, applied once it has the turn
}

func (w *gorillaConn) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	w.deadline = t
	w.mu.Unlock()
	return nil
}

func (w *gorillaConn) SetDeadline(t time.Time) error {
	_ = w.SetWriteDeadline(t)
	return w.SetReadDeadline(t)
}

func (w *gorillaConn) Write(p []byte) (int, error) {
	w.mu.Lock()
	deadline := w.deadline
	w.mu.Unlock()
	if !w.s.lockBy(deadline) {
		return 0, os.ErrDeadlineExceeded
	}
	defer w.s.unlock()
	_ = w.Conn.SetWriteDeadline(deadline)
	n, err := w.Conn.Write(p)
	_ = w.Conn.SetWriteDeadline(time.Time{})
	return n, err
}

// WebSocket opcodes (RFC 6455 §5.2) of the frames the gateway writes.
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
)

// appendHeader appends the header of an unmasked, final server frame with
// an n-byte payload.
func appendHeader(buf []byte, op byte, n int) []byte {
	buf = append(buf, 0x80|op)
	switch {
	case n < 126:
		return append(buf, byte(n))
	case n <= 0xFFFF:
		return append(buf, 126, byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(buf, 127), uint64(n))
}

// appendFrame appends one whole frame.
func appendFrame(buf []byte, op byte, payload []byte) []byte {
	return append(appendHeader(buf, op, len(payload)), payload...)
}

// textFrame is a text message as one frame.
func textFrame(payload []byte) []byte {
	return appendFrame(make([]byte, 0, len(payload)+10), opText, payload)
}

// messageFrame is a message of format f as one frame: binary for
// pixelflow.v1.bin, text for JSON.
func messageFrame(f wireFormat, payload []byte) []byte {
	return appendFrame(make([]byte, 0, len(payload)+10), messageOp(f), payload)
}

// messageOp is the opcode of format f's messages.
func messageOp(f wireFormat) byte {
	if f.binary() {
		return opBinary
	}
	return opText
}

// appendEventsWire appends the events message of evs (format f, the first
// with sequence first), header included.
func appendEventsWire(buf []byte, f wireFormat, first uint64, evs [][]byte) []byte {
	n := eventsPayloadLen(f, first, evs)
	return appendEventsPayload(appendHeader(buf, messageOp(f), n), f, first, evs)
}

// appendFromWire appends a region connection's events frame (JSON): evs,
// every event of its regions from sequence from through the last of them.
func appendFromWire(buf []byte, from uint64, evs [][]byte) []byte {
	var head [48]byte
	prefix := strconv.AppendUint(append(head[:0], `{"type":"events","from":`...), from, 10)
	prefix = append(prefix, `,"events":[`...)
	n := len(prefix) + len(eventsSuffix) + max(len(evs)-1, 0)
	for _, e := range evs {
		n += len(e)
	}
	buf = append(appendHeader(buf, opText, n), prefix...)
	for i, e := range evs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	return append(buf, eventsSuffix...)
}
