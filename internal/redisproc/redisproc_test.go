package redisproc_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistest"
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
