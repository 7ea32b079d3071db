package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestTwoCanvasesInOneDatabase: two canvases share one database and one
// Redis, each with its own relay; each canvas's stream gets exactly its
// own events, none of the other's.
func TestTwoCanvasesInOneDatabase(t *testing.T) {
	ctx := context.Background()
	client, closeFn, err := store.OpenEngine(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeFn(ctx) })
	noClose := func(context.Context) error { return nil }
	base := newEnv(t, false) // Redis, and a store we do not use
	envs := make([]*env, 2)
	for i, name := range []string{"left", "right"} {
		s, err := store.New(ctx, client, "shared", noClose, store.Options{Canvas: name})
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = &env{t: t, store: s, srv: base.srv, rdb: base.rdb, st: stream.New(base.rdb, name, 1_000_000)}
	}
	left, right := envs[0], envs[1]
	leftIDs, rightIDs := left.write(120), right.write(80)
	left.startRelay("rl", relay.Options{BatchSize: 32})
	right.startRelay("rr", relay.Options{BatchSize: 32})
	leftIDs = append(leftIDs, left.write(30)...)
	left.waitDrained(10 * time.Second)
	right.waitDrained(10 * time.Second)
	left.checkExactlyOnce(leftIDs)
	right.checkExactlyOnce(rightIDs)
}
