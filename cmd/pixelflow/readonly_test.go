package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestReadOnlyRedisIsNamedAndRecovers: REDIS_URL reaches a replica (a
// demoted primary looks the same: it answers PING and refuses writes).
// /readyz must say so (redis: read_only), writes keep being acknowledged
// into the outbox, and once the node is promoted (REPLICAOF NO ONE) the
// process becomes ready by itself and every acknowledged pixel reaches
// the stream.
func TestReadOnlyRedisIsNamedAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	replica := redistest.MustStartReplica(t, redistest.MustStart(t, false))
	m := runMain(t, map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "ro",
		"REDIS_URL": replica.URL(), "CANARY_BOUND": "0", "RATE_LIMIT": "0"}, "serve")
	base := "http://" + m.Addr
	readyz := func() (int, map[string]string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct{ Checks map[string]string }
		_ = json.Unmarshal(b, &r)
		return resp.StatusCode, r.Checks
	}
	waitFor := func(what string, ok func(int, map[string]string) bool) {
		t.Helper()
		for {
			code, checks := readyz()
			if ok(code, checks) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("/readyz never %s: %d %v", what, code, checks)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("said redis: read_only", func(code int, c map[string]string) bool {
		return code == http.StatusServiceUnavailable && c["redis"] == "read_only"
	})
	const n = 5
	for i := range n {
		if resp, body := post(t, base, `{"gx":`+itoa(i)+`,"gy":2,"color":"#00FF00"}`); resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST while Redis is read-only: %d %v", resp.StatusCode, body)
		}
	}
	if code, c := readyz(); code != http.StatusServiceUnavailable || c["redis"] != "read_only" {
		t.Fatalf("after the writes: %d %v, want still read_only", code, c)
	}

	admin := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	defer admin.Close()
	if err := admin.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor("became ready after the promotion", func(code int, c map[string]string) bool { return code == http.StatusOK })
	keys := stream.KeysFor(canvas.DefaultName)
	for {
		entries, err := admin.XRange(ctx, keys.Stream, "-", "+").Result()
		pixels := 0
		for _, m := range entries {
			if e, derr := stream.Decode(m); derr == nil && e.Kind == canvas.KindPixel && e.GY == 2 {
				pixels++
			}
		}
		if err == nil && pixels >= n {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the promoted node's stream holds %d of the %d pixels acknowledged while it was read-only (%v): %v", pixels, n, err, entries)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
