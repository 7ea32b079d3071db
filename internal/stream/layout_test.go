package stream_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestLayoutHasOneOwner fails when the Redis key prefix or the gateways'
// group prefix is spelled anywhere but in this package: every other
// package asks stream.KeysFor and stream.GroupName, so the whole layout is
// read (and changed) in one place.
func TestLayoutHasOneOwner(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	self, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	code := map[string]bool{".go": true, ".lua": true, ".js": true, ".sh": true}
	forbidden := []string{"pf:{", `"gw:`, "'gw:", "`gw:"}
	scanned := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path == self || (path != root && strings.HasPrefix(d.Name(), ".")) || d.Name() == "out" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !code[filepath.Ext(path)] {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		scanned++
		for i, line := range bytes.Split(b, []byte("\n")) {
			for _, f := range forbidden {
				if bytes.Contains(line, []byte(f)) {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("%s:%d spells the Redis layout (%s): ask package stream (KeysFor, GroupName) instead", rel, i+1, f)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < 50 {
		t.Fatalf("scanned only %d source files under %s: the walk is not seeing the tree", scanned, root)
	}
}

func TestGroupNameRoundTrip(t *testing.T) {
	g := stream.GroupName("gw-1")
	if id, ok := stream.GroupInstance(g); !ok || id != "gw-1" {
		t.Errorf("GroupInstance(%q) = %q, %v", g, id, ok)
	}
	if _, ok := stream.GroupInstance("analytics"); ok {
		t.Error("a group that is not a gateway's was taken for one")
	}
	k := stream.KeysFor("c")
	seen := map[string]bool{}
	for _, key := range []string{k.Stream, k.Epoch, k.Term, k.Gateways, k.Ops, k.Durable} {
		if seen[key] || !strings.HasPrefix(key, "pf:{c}:") {
			t.Errorf("key %q: duplicate, or outside the canvas's hash tag", key)
		}
		seen[key] = true
	}
}

// TestHeartbeatUsesServerClock: the heartbeat's score is the Redis
// server's time, which is what the gateways' reaper judges by.
func TestHeartbeatUsesServerClock(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	s := stream.New(rdb, "hb", 100)
	at, err := s.Heartbeat(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	now, err := rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := now.Sub(at); d < 0 || d > 5*time.Second {
		t.Errorf("heartbeat at %v, server time %v", at, now)
	}
	score, err := rdb.ZScore(ctx, s.Keys().Gateways, "a").Result()
	if err != nil || int64(score) != at.UnixMilli() {
		t.Errorf("score %v (%v), want %d", score, err, at.UnixMilli())
	}
}
