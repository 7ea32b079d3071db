// Package slowdisk makes a running process's disk slow: every fsync and
// fdatasync it makes (on any thread) waits an extra delay before it runs,
// as on a disk whose journal commit stalls. It attaches strace to the
// process and injects the delay into those two system calls only, so the
// process's other calls, and every other process, keep their speed.
//
// The drills use it on redis-server: a fault nobody scripted showed up as
// a flaky P99 on this machine's ext4 (an fsync takes 0.3 ms, and 40–70 ms
// twice a minute), and a Redis that fsyncs before every reply puts each such
// stall on the delivery path. Slowing the disk on purpose turns that rare
// stall into one a test can hold the system to.
package slowdisk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrNoStrace: strace is required and missing.
var ErrNoStrace = errors.New("strace not found on PATH: install it with `sudo apt-get install -y strace`")

// Fault is one attached strace. Stop detaches it; the process runs on at
// full speed.
type Fault struct {
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
	err  error
}

// Attach slows every fsync and fdatasync of pid (all its threads) by delay
// and returns once strace has attached to every thread. It fails when
// strace is missing or cannot trace pid (not root, or ptrace forbidden).
func Attach(ctx context.Context, pid int, delay time.Duration) (*Fault, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("slowdisk: no process (pid %d)", pid)
	}
	if delay <= 0 {
		return nil, fmt.Errorf("slowdisk: delay %s: want > 0", delay)
	}
	bin, err := exec.LookPath("strace")
	if err != nil {
		return nil, ErrNoStrace
	}
	us := strconv.FormatInt(delay.Microseconds(), 10)
	// -f with -p attaches to every existing thread (Redis fsyncs its AOF
	// on a background thread in everysec mode, on the main one in always
	// mode); -o /dev/null keeps the trace itself out of the way, while
	// strace's own message ("Process N attached with T threads", once all
	// are) still goes to stderr.
	cmd := exec.Command(bin, "-f", "-p", strconv.Itoa(pid), "-o", "/dev/null",
		"-e", "trace=fsync,fdatasync",
		"-e", "inject=fsync,fdatasync:delay_enter="+us)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("slowdisk: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("slowdisk: start strace: %w", err)
	}
	f := &Fault{cmd: cmd, done: make(chan struct{})}
	attached := make(chan struct{})
	var tail strings.Builder // strace's messages, for the error
	go func() {
		sc := bufio.NewScanner(stderr)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			if !seen && strings.Contains(line, " attached") {
				seen = true
				close(attached)
			} else if tail.Len() < 2000 {
				tail.WriteString(line + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		f.err = cmd.Wait()
		close(f.done)
	}()
	select {
	case <-attached:
		return f, nil
	case <-f.done:
		return nil, fmt.Errorf("slowdisk: strace -p %d exited before attaching (%v): %s", pid, f.err, strings.TrimSpace(tail.String()))
	case <-time.After(10 * time.Second):
		f.Stop()
		return nil, fmt.Errorf("slowdisk: strace -p %d did not attach within 10s", pid)
	case <-ctx.Done():
		f.Stop()
		return nil, ctx.Err()
	}
}

// Stop detaches strace (SIGINT: strace detaches from every thread and
// exits) and waits for it; after the process died it has nothing to do.
func (f *Fault) Stop() {
	f.once.Do(func() {
		select {
		case <-f.done: // the traced process exited, and strace with it
			return
		default:
		}
		_ = f.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-f.done:
		case <-time.After(10 * time.Second):
			_ = f.cmd.Process.Kill()
			<-f.done
		}
	})
}

// Done is closed when strace has exited (Stop, or the process died).
func (f *Fault) Done() <-chan struct{} { return f.done }
