package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/gateway"
	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestOnRedisCluster runs gateways on a real 3-primary, 3-replica Redis
// Cluster through the client REDIS_URL makes: group creation, XREADGROUP
// with the XACK pipelined before it, XAUTOCLAIM of idle entries, XINFO and
// XPENDING, heartbeats and the reaper (its clock is the canvas node's).
func TestOnRedisCluster(t *testing.T) {
	c := redistopo.StartCluster(t, redistopo.ClusterOptions{})
	rdb := c.URLClient()
	on := func(canvas, id string) gateway.Options {
		o := opts(rdb, id)
		o.Canvas = canvas
		return o
	}

	t.Run("two gateways deliver everything and acknowledge it", func(t *testing.T) {
		pub := gatewaytest.NewPublisher(t, rdb, "fan")
		pub.StartEpoch("e1")
		a := gatewaytest.Start(t, on("fan", "a"), pub)
		b := gatewaytest.Start(t, on("fan", "b"), pub)
		a.WaitReady(t, "e1")
		b.WaitReady(t, "e1")
		clients := append(startClients(t, 4, a.URL, "", nil), startClients(t, 4, b.URL, "", nil)...)
		for range 10 {
			pub.Publish(50)
		}
		waitConverged(t, pub, clients...)
		for _, cl := range clients {
			contiguous(t, cl, "e1", pub.Position().Seq)
		}
		keys, ctx := stream.KeysFor("fan"), context.Background()
		gatewaytest.Eventually(t, waitFor, func() error {
			for _, g := range []string{stream.GroupName("a"), stream.GroupName("b")} {
				p, err := rdb.XPending(ctx, keys.Stream, g).Result()
				if err != nil || p.Count != 0 {
					return fmt.Errorf("group %s pending %+v %v: acks did not land", g, p, err)
				}
			}
			return nil
		})
	})

	t.Run("idle pending entries are claimed", func(t *testing.T) {
		pub := gatewaytest.NewPublisher(t, rdb, "claim")
		pub.StartEpoch("e1")
		pub.Publish(5)
		keys, ctx := stream.KeysFor("claim"), context.Background()
		if err := rdb.XGroupCreate(ctx, keys.Stream, stream.GroupName("a"), "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: stream.GroupName("a"), Consumer: "old-process",
			Streams: []string{keys.Stream, ">"}, Count: 100, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
		o := on("claim", "a")
		o.ClaimIdle = 200 * time.Millisecond
		gw := gatewaytest.Start(t, o, pub)
		gw.WaitReady(t, "e1")
		gatewaytest.Eventually(t, waitFor, func() error {
			p, err := rdb.XPending(ctx, keys.Stream, stream.GroupName("a")).Result()
			if err != nil || p.Count != 0 || gw.G.Stats().LastSeq != 5 {
				return fmt.Errorf("pending %+v %v, stats %+v", p, err, gw.G.Stats())
			}
			return nil
		})
		cl := startClients(t, 1, gw.URL, "", nil)[0]
		pub.Publish(5)
		waitConverged(t, pub, cl)
	})

	t.Run("the reaper destroys dead gateways' groups only", func(t *testing.T) {
		pub := gatewaytest.NewPublisher(t, rdb, "reap")
		pub.StartEpoch("e1")
		pub.Publish(3)
		keys, ctx := stream.KeysFor("reap"), context.Background()
		for _, g := range []string{stream.GroupName("ghost"), stream.GroupName("nobeat"), "analytics"} {
			if err := rdb.XGroupCreate(ctx, keys.Stream, g, "0").Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := rdb.ZAdd(ctx, keys.Gateways, redis.Z{Score: float64(time.Now().Add(-time.Hour).UnixMilli()), Member: "ghost"}).Err(); err != nil {
			t.Fatal(err)
		}
		o := on("reap", "a")
		o.GroupTTL = time.Second
		a := gatewaytest.Start(t, o, pub)
		a.WaitReady(t, "e1")
		want := []string{"analytics", stream.GroupName("a")}
		gatewaytest.Eventually(t, waitFor, func() error {
			gs, err := rdb.XInfoGroups(ctx, keys.Stream).Result()
			if err != nil {
				return err
			}
			var names []string
			for _, g := range gs {
				names = append(names, g.Name)
			}
			slices.Sort(names)
			if !slices.Equal(names, want) || a.G.Stats().Reaped != 2 {
				return fmt.Errorf("groups %v (reaped %d), want %v", names, a.G.Stats().Reaped, want)
			}
			return nil
		})
		if err := rdb.ZScore(ctx, keys.Gateways, "ghost").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("ghost heartbeat still there: %v", err)
		}
	})
}
