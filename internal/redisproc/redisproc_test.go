package redisproc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/harness/slowdisk"
	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// A relative directory works (make run uses DATA_DIR=data): redis-server
// changes into its --dir before opening its log file.
func TestStartWithRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := redisproc.Start(context.Background(), redisproc.Options{Dir: filepath.Join("data", "redis"), AppendOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Kill()
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if _, err := os.Stat(filepath.Join("data", "redis", "redis.log")); err != nil {
		t.Errorf("log file not where expected: %v", err)
	}
	if err := s.Restart(context.Background(), false); err != nil {
		t.Fatalf("restart: %v", err)
	}
}

// A temporary server's directory is gone after Close.
func TestCloseRemovesTemporaryDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "private")
	s, err := redisproc.Start(context.Background(), redisproc.Options{Dir: dir, Temporary: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close (%v)", dir, err)
	}
}

func TestPauseResume(t *testing.T) {
	s := redistest.MustStart(t, false)
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if !s.Paused() {
		t.Fatal("Paused() false after Pause")
	}
	if err := ping(s.Addr()); err == nil {
		t.Fatal("a paused redis-server answered PING")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := ping(s.Addr()); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
	// Kill while paused must end the process, not hang.
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Kill(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Kill of a paused server did not return")
	}
	if s.Paused() || s.Pid() != 0 {
		t.Fatal("killed server still looks paused or running")
	}
}

// ping asks the server at addr for PONG.
func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer c.Close()
	return c.Ping(context.Background()).Err()
}

// TestRepliesDoNotWaitForTheDisk: with its disk stalled (every fsync held
// for a minute), the AOF server still answers writes. A Redis that fsyncs
// before every reply (appendfsync always, pixelflow's old setting) put each
// disk stall on the delivery path: a flaky drill P99 on this machine's ext4,
// whose fsync takes 40–70 ms twice a minute.
func TestRepliesDoNotWaitForTheDisk(t *testing.T) {
	if answered, asked := writesWithStalledDisk(t, false); answered != asked {
		t.Fatalf("%d of %d writes answered while the disk stalled: replies wait for fsync", answered, asked)
	}
}

// TestRepliesDoNotWaitForTheDiskHasTeeth: the same scenario with the old
// setting must see writes stuck behind the disk.
func TestRepliesDoNotWaitForTheDiskHasTeeth(t *testing.T) {
	if answered, asked := writesWithStalledDisk(t, true); answered == asked {
		t.Fatalf("with appendfsync always every write (%d) was answered while the disk stalled: the test cannot tell", asked)
	}
}

// writesWithStalledDisk stalls every fsync of an AOF server and counts the
// stream writes answered within 3 s each, stopping at the first that is not.
func writesWithStalledDisk(t *testing.T, fsyncEveryWrite bool) (answered, asked int) {
	s, err := redisproc.Start(context.Background(), redisproc.Options{Dir: t.TempDir(), AppendOnly: true, FsyncEveryWrite: fsyncEveryWrite})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	add := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return c.XAdd(ctx, &redis.XAddArgs{Stream: "s", Values: []any{"k", "v"}}).Err()
	}
	if err := add(); err != nil { // the AOF is open and written once
		t.Fatal(err)
	}
	f, err := slowdisk.Attach(context.Background(), s.Pid(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop()
	asked = 20
	for range asked {
		if err := add(); err != nil {
			t.Logf("write %d: %v", answered+1, err)
			break
		}
		answered++
	}
	return answered, asked
}
