package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// roundTrips counts what a client sends Redis: XACKs sent alone, and
// pipelines that carry an XACK before an XREADGROUP.
type roundTrips struct {
	mu                sync.Mutex
	aloneAcks, riding int
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "xack") {
			r.mu.Lock()
			r.aloneAcks++
			r.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) == 2 && strings.EqualFold(cmds[0].Name(), "xack") && strings.EqualFold(cmds[1].Name(), "xreadgroup") {
			r.mu.Lock()
			r.riding++
			r.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

// TestAckRidesWithTheNextRead: the consumer acknowledges what the hub took
// in the same round trip as its next read (one round trip per event at a
// steady rate, not two), and nothing stays pending.
func TestAckRidesWithTheNextRead(t *testing.T) {
	_, rdb, pub := newRig(t, false)
	rt := &roundTrips{}
	rdb.AddHook(rt)
	gw := gatewaytest.Start(t, opts(rdb, "a"), pub)
	gw.WaitReady(t, "e1")
	c := startClients(t, 1, gw.URL, "", nil)[0]
	const events = 10
	for range events { // one at a time: each read returns one entry
		pub.Publish(1)
		waitConverged(t, pub, c)
	}
	keys := stream.KeysFor("t")
	gatewaytest.Eventually(t, waitFor, func() error {
		p, err := rdb.XPending(context.Background(), keys.Stream, stream.GroupName("a")).Result()
		if err != nil || p.Count != 0 {
			return fmt.Errorf("pending %+v %v", p, err)
		}
		return nil
	})
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.aloneAcks != 0 || rt.riding < events {
		t.Fatalf("%d XACKs sent alone, %d with a read; want 0 alone and at least %d with a read", rt.aloneAcks, rt.riding, events)
	}
}
