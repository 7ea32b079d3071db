package stream_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestOnRedisCluster runs the stream's operations on a real 3-primary,
// 3-replica Redis Cluster through the client REDIS_URL makes: every key
// of a canvas in one slot (asked of the cluster, for every field of Keys),
// every script and multi-key call accepted there, and a script whose keys
// span slots refused, so one that did would fail here, not in production.
func TestOnRedisCluster(t *testing.T) {
	c := redistopo.StartCluster(t, redistopo.ClusterOptions{})
	rdb := c.URLClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("keys of a canvas share its slot", func(t *testing.T) {
		slots := map[int64]bool{}
		for _, name := range []string{"c", canvas.DefaultName, "a.b-c_d", "Z9", strings.Repeat("x", canvas.MaxNameLen)} {
			if err := canvas.ValidateName(name); err != nil {
				t.Fatalf("%q: %v", name, err)
			}
			k := reflect.ValueOf(stream.KeysFor(name))
			var first int64 = -1
			for i := range k.NumField() {
				key := k.Field(i).String()
				slot, err := rdb.ClusterKeySlot(ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				if first == -1 {
					first = slot
				} else if slot != first {
					t.Errorf("canvas %q: %s (%s) is in slot %d, its other keys in %d", name, k.Type().Field(i).Name, key, slot, first)
				}
			}
			slots[first] = true
		}
		if len(slots) < 2 {
			t.Errorf("every canvas in one slot %v: the hash tag is not the canvas name", slots)
		}
	})

	t.Run("operations", func(t *testing.T) {
		st := stream.New(rdb, "c", 100)
		step := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1")}); !errors.Is(err, stream.ErrEpochGone) {
			t.Fatalf("publish before the epoch: %v, want ErrEpochGone", err)
		}
		step("start epoch", st.StartEpoch(ctx, 1, "e1"))
		step("claim term", st.ClaimTerm(ctx, 2))
		if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1")}); !errors.Is(err, stream.ErrFenced) {
			t.Fatalf("publish of a deposed term: %v, want ErrFenced", err)
		}
		// 300 entries in batches of 50 into a stream bounded at ~100: the
		// trim (XADD MAXLEN ~) runs inside the script.
		var tail uint64
		for range 6 {
			batch := make([]stream.Entry, 50)
			for i := range batch {
				batch[i] = entry(tail+uint64(i)+1, "e1")
			}
			step("publish", st.Publish(ctx, 2, "e1", tail, batch))
			tail += 50
		}
		var tm *stream.TailMismatchError
		if err := st.Publish(ctx, 2, "e1", 10, []stream.Entry{entry(11, "e1")}); !errors.As(err, &tm) || tm.Actual != tail {
			t.Fatalf("publish from a stale tail: %v, want tail %d", err, tail)
		}
		pos, err := st.Tail(ctx) // MULTI of GET and XREVRANGE
		step("tail", err)
		if pos != (canvas.Position{Epoch: "e1", Seq: tail}) {
			t.Fatalf("tail %+v, want e1/%d", pos, tail)
		}
		// The replication barrier runs on the slot's primary, whose one
		// replica acknowledges it (WAIT on another node would answer 0).
		step("replicated", st.Replicated(ctx, 1, time.Second))
		if err := st.Replicated(ctx, 2, 50*time.Millisecond); !errors.Is(err, stream.ErrNotReplicated) {
			t.Errorf("two replicas asked of a primary with one: %v, want ErrNotReplicated", err)
		}
		n, err := st.Len(ctx)
		step("len", err)
		if n < 100 || n >= 300 {
			t.Errorf("stream length %d after 300 entries bounded at ~100: not trimmed", n)
		}
		got, err := st.Range(ctx, tail-9, 0, 100)
		step("range", err)
		if len(got) != 10 || got[9].Seq != tail {
			t.Errorf("range: %d entries", len(got))
		}
		at, err := st.Heartbeat(ctx, "gw")
		step("heartbeat", err)
		now, err := st.Clock(ctx)
		step("clock", err)
		if d := now.Sub(at); d < 0 || d > 5*time.Second {
			t.Errorf("clock %v, heartbeat %v", now, at)
		}
		step("put figures", st.PutFigures(ctx, "gw", []byte("{}")))
		figs, err := st.Figures(ctx)
		step("figures", err)
		if figs["gw"] != "{}" {
			t.Errorf("figures %v", figs)
		}
		step("new epoch", st.StartEpoch(ctx, 2, "e2"))
		if n, err := st.Len(ctx); err != nil || n != 0 {
			t.Errorf("after a new epoch: length %d %v, want 0", n, err)
		}
	})

	t.Run("a script across slots is refused", func(t *testing.T) {
		// The slots of canvases a and b differ (checked), so the cluster
		// refuses the call: a layout change that split a canvas's keys
		// would fail the operations above the same way.
		a, b := stream.KeysFor("a"), stream.KeysFor("b")
		sa, _ := rdb.ClusterKeySlot(ctx, a.Stream).Result()
		sb, _ := rdb.ClusterKeySlot(ctx, b.Stream).Result()
		if sa == sb {
			t.Fatalf("canvases a and b share slot %d: pick others", sa)
		}
		err := stream.Scripts["start_epoch.lua"].Run(ctx, rdb, []string{a.Stream, b.Epoch, a.Term}, 1, "e1").Err()
		if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Errorf("a script given keys of two slots: %v, want CROSSSLOT", err)
		}
		// A script that reaches a key it was not given, in another slot.
		reach := redis.NewScript(`return redis.call('GET', ARGV[1])`)
		if err := reach.Run(ctx, rdb, []string{a.Epoch}, b.Epoch).Err(); err == nil {
			t.Error("a script reaching another slot's key was run")
		} else {
			t.Logf("reaching another slot: %v", err)
		}
	})
}
