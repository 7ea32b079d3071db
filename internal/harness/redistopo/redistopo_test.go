package redistopo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// client is the REDIS_URL client pixelflow would make of url.
func client(t *testing.T, url string, want redisurl.Mode) redis.UniversalClient {
	t.Helper()
	tg, err := redisurl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Mode != want {
		t.Fatalf("%s parsed as %s, want %s", url, tg.Mode, want)
	}
	c := tg.Client()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// eventually retries f until it succeeds or 15s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSentinelKillPrimary: SIGKILL of the primary makes the Sentinels
// promote a replica that has every write the old one acknowledged to
// WAIT; the REDIS_URL client follows, and the old primary, restarted,
// comes back as a replica of the new one.
func TestSentinelKillPrimary(t *testing.T) {
	s := redistopo.StartSentinel(t, redistopo.SentinelOptions{Replicas: 2})
	ctx := ctxFor(t)
	rdb := client(t, s.URL(), redisurl.Sentinel)
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 2, 2000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT: %d replicas, %v", n, err)
	}
	old, err := s.KillPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := s.WaitNewPrimary(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sentinels promoted %s %s after the kill", p.Addr(), time.Since(start).Round(time.Millisecond))
	if !slices.Contains(s.Nodes[1:], p) || old != s.Nodes[0] {
		t.Fatalf("old %s, new %s: want node0 replaced by a replica", old.Addr(), p.Addr())
	}
	eventually(t, "the URL's client writes to the new primary", func() error {
		if v, err := rdb.Get(ctx, "k").Result(); err != nil || v != "before" {
			return fmt.Errorf("get: %q %v", v, err)
		}
		return rdb.Set(ctx, "k", "after", 0).Err()
	})
	if err := old.Restart(ctx, true); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitReplicasLinked(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the old primary replicates the new one", func() error {
		c := redis.NewClient(&redis.Options{Addr: old.Addr()})
		defer c.Close()
		if v, err := c.Get(ctx, "k").Result(); err != nil || v != "after" {
			return fmt.Errorf("old primary has %q (%v)", v, err)
		}
		return nil
	})
}

// TestSentinelFailover: a planned failover promotes a replica and loses
// nothing, and the client follows without being told.
func TestSentinelFailover(t *testing.T) {
	s := redistopo.StartSentinel(t, redistopo.SentinelOptions{})
	ctx := ctxFor(t)
	rdb := client(t, s.URL(), redisurl.Sentinel)
	for i := range 100 {
		if err := rdb.RPush(ctx, "l", i).Err(); err != nil {
			t.Fatal(err)
		}
	}
	old, err := s.Failover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p, err := s.WaitNewPrimary(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("planned failover to %s took %s", p.Addr(), time.Since(start).Round(time.Millisecond))
	eventually(t, "every write is on the new primary", func() error {
		if n, err := rdb.LLen(ctx, "l").Result(); err != nil || n != 100 {
			return fmt.Errorf("llen %d %v", n, err)
		}
		return rdb.RPush(ctx, "l", 100).Err()
	})
}

// TestSentinelPauseReplicationLosesAcknowledgedWrites: with replication
// paused, the primary acknowledges a write no replica has; resumed, the
// replica catches up; killing the primary during a pause promotes a
// replica without that write. This is the fault the harness exists to
// inject: Redis replication is asynchronous.
func TestSentinelPauseReplicationLosesAcknowledgedWrites(t *testing.T) {
	s := redistopo.StartSentinel(t, redistopo.SentinelOptions{})
	ctx := ctxFor(t)
	rdb := client(t, s.URL(), redisurl.Sentinel)
	resume, err := s.PauseReplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "kept", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT after resume: %d %v, want the replica caught up", n, err)
	}
	resume, err = s.PauseReplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, "lost", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	n, err := rdb.Do(short, "WAIT", 1, 200).Int()
	cancel()
	if err != nil || n != 0 {
		t.Fatalf("WAIT with replication paused: %d replicas, %v; want 0", n, err)
	}
	old, err := s.KillPrimary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WaitNewPrimary(ctx, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new primary answers", func() error { return rdb.Get(ctx, "kept").Err() })
	if err := rdb.Get(ctx, "lost").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the write acknowledged while replication was paused: %v, want it lost", err)
	}
}

// TestCluster: the cluster serves keys of every slot through the
// REDIS_URL client; a planned failover and a SIGKILL of a primary each
// promote that slot's replica, and the client follows both.
func TestCluster(t *testing.T) {
	c := redistopo.StartCluster(t, redistopo.ClusterOptions{})
	ctx := ctxFor(t)
	rdb := client(t, c.URL(), redisurl.Cluster)
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	primaries := map[*redisproc.Server]bool{}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "v1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		p, err := c.PrimaryFor(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		primaries[p] = true
	}
	if len(primaries) != 3 {
		t.Fatalf("%d keys landed on %d primaries, want all 3", len(keys), len(primaries))
	}
	for _, tc := range []struct {
		name  string
		fault func(context.Context, string) (*redisproc.Server, error)
	}{{"failover", c.Failover}, {"kill", c.KillPrimary}} {
		key := map[string]string{"failover": "a", "kill": "b"}[tc.name]
		old, err := tc.fault(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		p, err := c.WaitNewPrimary(ctx, key, old)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s took over %q's slot in %s", tc.name, p.Addr(), key, time.Since(start).Round(time.Millisecond))
		eventually(t, tc.name+": the client follows", func() error {
			if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "v1" {
				return fmt.Errorf("get %s: %q %v", key, v, err)
			}
			return rdb.Set(ctx, key, "v2", 0).Err()
		})
	}
}

// TestClusterPauseReplication: a write acknowledged while its slot's
// replica was paused is lost when that primary dies.
func TestClusterPauseReplication(t *testing.T) {
	c := redistopo.StartCluster(t, redistopo.ClusterOptions{})
	ctx := ctxFor(t)
	rdb := c.Client()
	const kept, lost = "{s}kept", "{s}lost"
	if err := rdb.Set(ctx, kept, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p, err := c.PrimaryFor(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer node.Close()
	if n, err := node.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d %v", n, err)
	}
	resume, err := c.PauseReplication(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, lost, "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	old, err := c.KillPrimary(ctx, kept)
	if err != nil {
		t.Fatal(err)
	}
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitNewPrimary(ctx, kept, old); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new primary answers", func() error { return rdb.Get(ctx, kept).Err() })
	if err := rdb.Get(ctx, lost).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("the write acknowledged while replication was paused: %v, want it lost", err)
	}
}

// TestClusterMigrateSlot: MigrateSlot moves every key of a slot to another
// primary, one at a time, while a client keeps incrementing one of them
// through the REDIS_URL client (following ASK, TRYAGAIN and MOVED); after
// it, the cluster names the new owner, the keys are there and not on the
// old one, and no increment was lost.
func TestClusterMigrateSlot(t *testing.T) {
	c := redistopo.StartCluster(t, redistopo.ClusterOptions{})
	ctx := ctxFor(t)
	rdb := client(t, c.URL(), redisurl.Cluster)
	const counter = "{m}counter"
	keys := []string{"{m}a", "{m}b", "{m}c", "{m}d", "{m}e"}
	for _, k := range keys {
		if err := rdb.Set(ctx, k, "v:"+k, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "{m}stream", ID: "1-0", Values: []string{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, counter, 0, 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot, err := c.Slot(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	from, err := c.PrimaryFor(ctx, counter)
	if err != nil {
		t.Fatal(err)
	}
	primaries, err := c.Primaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(primaries) != 3 {
		t.Fatalf("%d primaries, want 3", len(primaries))
	}
	var to *redisproc.Server
	for _, p := range primaries {
		if p != from {
			to = p
			break
		}
	}
	before, err := c.Redirections(ctx)
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	var acked, failed int64
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := rdb.Incr(ctx, counter).Err(); err != nil {
				failed++
			} else {
				acked++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	c.MigrateKeyGap = 100 * time.Millisecond
	m, err := c.MigrateSlot(ctx, slot, to)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.Redirections(ctx)
	if err != nil {
		t.Fatal(err)
	}
	red := after.Sub(before)
	t.Logf("slot %d: %d keys from %s to %s in %s; %d increments acknowledged, %d failed; %s",
		slot, m.Keys, m.From.Addr(), m.To.Addr(), m.Took.Round(time.Millisecond), acked, failed, red)

	if m.From != from || m.Keys != len(keys)+2 {
		t.Fatalf("moved %d keys from %s, want %d from %s", m.Keys, m.From.Addr(), len(keys)+2, from.Addr())
	}
	if p, err := c.PrimaryFor(ctx, counter); err != nil || p != to {
		t.Fatalf("the cluster names %v (%v) the slot's primary, want %s", p, err, to.Addr())
	}
	for n, want := range map[*redisproc.Server]int64{from: 0, to: int64(len(keys) + 2)} {
		node := redis.NewClient(&redis.Options{Addr: n.Addr()})
		got, err := node.ClusterCountKeysInSlot(ctx, slot).Result()
		_ = node.Close()
		if err != nil || got != want {
			t.Errorf("%s holds %d keys of slot %d (%v), want %d", n.Addr(), got, slot, err, want)
		}
	}
	for _, k := range keys {
		if v, err := rdb.Get(ctx, k).Result(); err != nil || v != "v:"+k {
			t.Errorf("get %s after the migration: %q %v", k, v, err)
		}
	}
	if n, err := rdb.XLen(ctx, "{m}stream").Result(); err != nil || n != 1 {
		t.Errorf("the stream after the migration: %d entries, %v", n, err)
	}
	if failed > 0 {
		t.Errorf("%d increments failed during the migration", failed)
	}
	if got, err := rdb.Get(ctx, counter).Int64(); err != nil || got != acked {
		t.Errorf("counter %d (%v), want the %d acknowledged increments", got, err, acked)
	}
	if red.Ask == 0 {
		t.Errorf("no ASK during the migration (%s): the writes never met the split slot", red)
	}
}
