package redisproc

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// A relative directory works (make run uses DATA_DIR=data): redis-server
// changes into its --dir before opening its log file.
func TestStartWithRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	s, err := Start(context.Background(), Options{Dir: filepath.Join("data", "redis"), AppendOnly: true})
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
	s, err := Start(context.Background(), Options{Dir: dir, Temporary: true})
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
