package redisproc_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisproc/redistest"
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

// TestCutAOF writes what the relay and a gateway write (scripts of several
// XADDs, single XADDs, consumer-group commands), cuts the newest XADDs the
// way an fsync window loses them and checks what Redis loads afterwards.
func TestCutAOF(t *testing.T) {
	ctx := context.Background()
	s := redistest.MustStart(t, true)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	two := `redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, ARGV[1], 'f', 'v'); redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, ARGV[2], 'f', 'v'); return 2`
	for i := 0; i < 3; i++ {
		if err := rdb.Eval(ctx, two, []string{"s"}, fmt.Sprintf("%d-0", 2*i+1), fmt.Sprintf("%d-0", 2*i+2)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "7-0", Values: []any{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XGroupCreate(ctx, "s", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"s", ">"}, Count: 100}).Err(); err != nil {
		t.Fatal(err)
	}
	isXAdd := func(args []string) bool { return strings.EqualFold(args[0], "XADD") }

	if _, err := s.CutAOF(1, isXAdd); err == nil {
		t.Fatal("CutAOF on a running server must fail")
	}
	s.Kill()
	cut, err := s.CutAOF(1, isXAdd)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(cut)
	// The single XADD and everything after it (the group's creation and
	// its read) are gone; the scripts' blocks stay whole.
	if cut.Matched != 1 || cut.Commands["XGROUP"] != 1 || cut.Kept >= cut.Size {
		t.Fatalf("unexpected cut: %v", cut)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 6 {
		t.Fatalf("XLEN after cutting one XADD = %d, want 6", n)
	}
	if groups, err := rdb.XInfoGroups(ctx, "s").Result(); err != nil || len(groups) != 0 {
		t.Fatal("the consumer group created after the cut point survived")
	}

	// Three entries: two whole blocks of two go (a block is never split).
	s.Kill()
	cut, err = s.CutAOF(3, isXAdd)
	if err != nil {
		t.Fatal(err)
	}
	if cut.Matched != 4 || cut.Commands["MULTI"] != 2 || cut.Commands["EXEC"] != 2 {
		t.Fatalf("unexpected cut: %v", cut)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 2 {
		t.Fatalf("XLEN after cutting two blocks = %d, want 2", n)
	}

	s.Kill()
	if _, err := s.CutAOF(5, isXAdd); err == nil || !strings.Contains(err.Error(), "fewer than 5") {
		t.Fatalf("cutting more than the file holds: %v, want a refusal", err)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 2 {
		t.Fatalf("a refused cut changed the data: XLEN %d, want 2", n)
	}
}

// ping asks the server at addr for PONG.
func ping(addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second})
	defer c.Close()
	return c.Ping(context.Background()).Err()
}
