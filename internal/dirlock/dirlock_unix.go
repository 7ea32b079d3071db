//go:build unix

package dirlock

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Lock is a held directory lock.
type Lock struct {
	f *os.File
}

// Acquire takes the directory's lock without waiting. It fails with a
// *LockedError when another holder has it.
func Acquire(dir string) (*Lock, error) {
	l, err := acquire(lockPath(dir))
	var le *LockedError
	if errors.As(err, &le) {
		le.Dir = dir
	}
	return l, err
}

// AcquireFile takes the lock file at path (created if missing) without
// waiting. It fails with a *LockedError (Dir empty) when another holder
// has it.
func AcquireFile(path string) (*Lock, error) { return acquire(path) }

func acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid := readPid(f)
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Path: path, Pid: pid}
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// A failed Truncate or WriteAt must not pass unnoticed (it did while
	// the first err shadowed the second).
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("write pid to %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Release empties the lock file and gives the lock up. The file stays: a
// process waiting on the old file while it was removed would hold a lock on
// a name nobody else opens.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	_ = l.f.Truncate(0)
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

func readPid(f *os.File) int {
	b, err := io.ReadAll(io.NewSectionReader(f, 0, 32))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}
