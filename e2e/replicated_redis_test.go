package e2e

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/pace"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestOnSentinel: the api and two gateways reach Redis through a Sentinel
// REDIS_URL (a primary, one replica, three Sentinels); a planned failover
// (SENTINEL FAILOVER) moves the primary while pixels are written. Every
// acknowledged pixel reaches every client (history-checked), and the relay
// publishes on the new primary.
func TestOnSentinel(t *testing.T) { replicatedRedis(t, redisurl.Sentinel) }

// TestOnRedisCluster: the same on a 3×2 Redis Cluster (REDIS_URL names
// every node as a seed), the canvas's slot moved to its replica by CLUSTER
// FAILOVER mid-traffic.
func TestOnRedisCluster(t *testing.T) { replicatedRedis(t, redisurl.Cluster) }

func replicatedRedis(t *testing.T, mode redisurl.Mode) {
	ctx, c := setup(t, cluster.Options{Gateways: 2, Redis: mode})
	if c.Topology.Redis != mode || c.RedisProxy != nil {
		t.Fatalf("asked for Redis %s, the cluster runs %q (proxy %v)", mode, c.Topology.Redis, c.RedisProxy != nil)
	}
	if tg, err := redisurl.Parse(c.RedisURL); err != nil || tg.Mode != mode {
		t.Fatalf("REDIS_URL %s is %q (%v), want %s", c.RedisURL, tg.Mode, err, mode)
	}
	for _, p := range c.Processes() {
		if !slices.Contains(p.Env, "REDIS_URL="+c.RedisURL) {
			t.Fatalf("%s does not run on the topology's REDIS_URL", p.Name)
		}
	}
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 12)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// 200 writes a second for 8 s; the failover after 300 of them.
	const total = 1600
	writer := cluster.NewWriter(c.APIURL(), rec, 32)
	done := make(chan pace.Result, 1)
	go func() {
		rngs := make([]*rand.Rand, 16)
		for i := range rngs {
			rngs[i] = rand.New(rand.NewPCG(uint64(i), 30))
		}
		done <- pace.Pacer{Rate: 200, Total: total, Workers: 16}.Run(ctx, func(i int, _ time.Time) { writer.PlaceRandom(ctx, rngs[i]) })
	}()
	waitAcked(t, writer, 300)
	key := stream.KeysFor(canvas.DefaultName).Stream
	old, err := c.Failover(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	p, err := c.WaitNewPrimary(ctx, key, old)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(asked)
	res := <-done
	// A write due while every worker is busy is shed, not sent (two
	// shared cores stall now and then); every one sent must be a 201.
	if writer.Acked() != res.Sent || res.Sent < total/2 {
		t.Fatalf("%d of %d writes sent were acknowledged (%d shed): a Redis failover must not fail a write", writer.Acked(), res.Sent, res.Shed)
	}
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)

	// The relay moved to the new primary: it holds the stream up to
	// where every client is (and a canary further, maybe).
	direct := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer direct.Close()
	tail, err := stream.New(direct, canvas.DefaultName, 0).Tail(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range w.Clients {
		if at := cl.Position(); at.Epoch != tail.Epoch || at.Seq > tail.Seq {
			t.Errorf("a client is at %s, the new primary %s holds the stream up to %s: the relay did not move to it", at, p.Addr(), tail)
			break
		}
	}
	events, lost, unexpected, dups := rep.Totals()
	t.Logf("Redis %s: primary %s → %s %s after the planned failover; %d writes acknowledged; the new primary's tail %s; clients: %d events, %d lost, %d unexpected, %d duplicated",
		mode, old.Addr(), p.Addr(), promoted.Round(time.Millisecond), writer.Acked(), tail, events, lost, unexpected, dups)
}

// TestReplicatedRedisNeedsATest: a replicated topology ties its
// redis-server processes to the test that started it, so Launch, which
// has none (the load test's), refuses one in a line that says what to
// use, rather than leave processes behind; an unknown topology is refused
// too.
func TestReplicatedRedisNeedsATest(t *testing.T) {
	ctx := t.Context()
	c, err := cluster.Launch(ctx, t.TempDir(), cluster.Options{Provider: cluster.Local, Store: cluster.StoreEmbedded, Bin: env.bin, Redis: redisurl.Sentinel})
	if c != nil {
		defer c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "start the cluster with Start") {
		t.Errorf("Launch on Sentinel: %v; want an error naming Start", err)
	}
	c2, err := cluster.Launch(ctx, t.TempDir(), cluster.Options{Provider: cluster.Local, Store: cluster.StoreEmbedded, Bin: env.bin, Redis: "raft"})
	if c2 != nil {
		defer c2.Close()
	}
	if err == nil || !strings.Contains(err.Error(), `redis "raft": want single, sentinel or cluster`) {
		t.Errorf("Launch on Redis \"raft\": %v; want it refused, naming the topologies", err)
	}
}
