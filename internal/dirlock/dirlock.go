// Package dirlock keeps a data directory to one process at a time.
//
// Two pixelflow processes on one DATA_DIR would each open the embedded store
// file, each acknowledge writes into its own copy in memory, and each
// rewrite the file on commit: the last writer silently discards the other's
// acknowledged pixels. Acquire takes an exclusive flock(2) on a lock file in
// the directory and writes the holder's pid into it, so the second process
// refuses to start and says who holds the directory.
//
// flock locks belong to an open file description, not to a process: two
// Acquire calls in one process conflict just as two processes do, and the
// kernel drops the lock when the holder exits, however it exits (kill -9
// included), so a crash never leaves a stale lock behind. The pid in the
// file is only informational; it is read only while the lock is held.
//
// AcquireFile takes the same lock on a lock file of the caller's choosing:
// the embedded store locks a sidecar next to its own file, so that two
// opens of one store file (a tool beside the server, two stores in one
// process) are refused whoever opens them, not only two pixelflow binaries.
// The store's lock is a different file from the directory's and neither
// waits (LOCK_NB), so holding both can never deadlock.
package dirlock

import (
	"fmt"
	"os"
	"path/filepath"
)

// FileName is the lock file's name inside the directory.
const FileName = "pixelflow.lock"

// LockedError says the directory (or, from AcquireFile, the lock file) is
// held by another process or another Acquire in this one.
type LockedError struct {
	Dir  string // empty from AcquireFile
	Path string // the lock file
	Pid  int    // the holder's pid; 0 when it has not written it yet
}

func (e *LockedError) Error() string {
	holder := "another process"
	switch {
	case e.Pid > 0 && e.Pid == os.Getpid():
		holder = fmt.Sprintf("this process (pid %d)", e.Pid)
	case e.Pid > 0:
		holder = fmt.Sprintf("another process (pid %d)", e.Pid)
	}
	if e.Dir == "" {
		return fmt.Sprintf("lock file %s is held by %s", e.Path, holder)
	}
	return fmt.Sprintf("directory %q is in use by %s: lock file %s", e.Dir, holder, e.Path)
}

func lockPath(dir string) string { return filepath.Join(dir, FileName) }
