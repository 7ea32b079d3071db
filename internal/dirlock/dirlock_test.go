package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/dirlock"
)

// helperEnv makes the test binary a lock holder (see TestHelperHoldsLock).
const helperEnv = "DIRLOCK_HELPER_DIR"

// TestHelperHoldsLock is not a test of its own: run by holdInChild with
// helperEnv set, it takes the lock, says "locked", and holds it until its
// stdin closes or it is killed.
func TestHelperHoldsLock(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		return // a plain run: nothing to hold
	}
	l, err := dirlock.Acquire(dir)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(3)
	}
	fmt.Println("locked")
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = l.Release()
	os.Exit(0)
}

// holdInChild starts a child process holding dir's lock.
func holdInChild(t *testing.T, dir string) (*exec.Cmd, func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsLock$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("child did not take the lock: %q %v", line, err)
	}
	return cmd, func() { _ = stdin.Close(); _ = cmd.Wait() }
}

// Two processes: the second is refused with the directory and the holder's
// pid; once the holder exits the directory is free again.
func TestSecondProcessIsRefused(t *testing.T) {
	dir := t.TempDir()
	child, release := holdInChild(t, dir)
	_, err := dirlock.Acquire(dir)
	var le *dirlock.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("Acquire while a child holds the lock: %v, want a LockedError", err)
	}
	if le.Pid != child.Process.Pid || le.Dir != dir {
		t.Fatalf("LockedError %+v, want dir %s pid %d", le, dir, child.Process.Pid)
	}
	for _, want := range []string{dir, fmt.Sprintf("pid %d", child.Process.Pid)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	release()
	l, err := dirlock.Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder released: %v", err)
	}
	_ = l.Release()
}

// A holder killed with SIGKILL leaves no stale lock: the kernel drops it.
func TestKilledHolderLeavesNoLock(t *testing.T) {
	dir := t.TempDir()
	child, _ := holdInChild(t, dir)
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	l, err := dirlock.Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after the holder was killed: %v", err)
	}
	_ = l.Release()
}

// flock belongs to the open file description: a second Acquire in the same
// process conflicts too (two Main instances in one test process rely on it),
// and names this process.
func TestSecondAcquireInOneProcessConflicts(t *testing.T) {
	dir := t.TempDir()
	l, err := dirlock.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir)
	var le *dirlock.LockedError
	if !errors.As(err, &le) || le.Pid != os.Getpid() {
		t.Fatalf("second Acquire in one process: %v, want a LockedError naming pid %d", err, os.Getpid())
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, dirlock.FileName))
	if err != nil || len(b) != 0 {
		t.Fatalf("lock file after Release: %q %v, want it empty", b, err)
	}
	l2, err := dirlock.Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = l2.Release()
}

// AcquireFile locks the file it is given: a second holder is refused with
// a LockedError that names the file and this process, and the file is free
// again after Release.
func TestAcquireFileConflicts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.lungo.lock")
	l, err := dirlock.AcquireFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.AcquireFile(path)
	var le *dirlock.LockedError
	if !errors.As(err, &le) || le.Path != path || le.Pid != os.Getpid() || le.Dir != "" {
		t.Fatalf("second AcquireFile: %v (%+v), want a LockedError for %s naming pid %d", err, le, path, os.Getpid())
	}
	if want := fmt.Sprintf("lock file %s is held by this process (pid %d)", path, os.Getpid()); err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := dirlock.AcquireFile(path)
	if err != nil {
		t.Fatalf("AcquireFile after Release: %v", err)
	}
	_ = l2.Release()
}
