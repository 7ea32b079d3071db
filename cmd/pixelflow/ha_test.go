package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestSentinelFailoverDeliversEveryPixel: `serve` and a separate `gateway`
// reach Redis through a Sentinel REDIS_URL while a writer places pixels;
// the primary is SIGKILLed and the Sentinels promote the replica. Every
// acknowledged pixel must reach every WebSocket client, or the client is
// told to resync and converges: the history checker judges (nothing lost,
// nothing foreign). With replication paused before the kill the promoted
// replica lacks stream entries the old primary acknowledged, so the relay
// must notice the short stream and repair it: on the embedded store, which
// prunes published outbox entries at once, by a new epoch that makes every
// client resync.
//
// The separate gateway gets nothing from the relay directly (no offers),
// so its clients see only what reached the new primary: the time from the
// kill until the first pixel committed after it reaches that gateway's
// probe client is the recovery time reported.
func TestSentinelFailoverDeliversEveryPixel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause bool
	}{{"kill", false}, {"kill with replication paused", true}} {
		t.Run(tc.name, func(t *testing.T) { sentinelFailover(t, tc.pause) })
	}
}

func sentinelFailover(t *testing.T, pause bool) {
	topo := redistopo.StartSentinel(t, redistopo.SentinelOptions{})
	var logs logbuf.Buffer // the relay's, to see how it repaired the stream
	m := NewMain()
	m.LogOutput = &logs
	if err := m.ParseFlags([]string{"serve"}, func(k string) string {
		return map[string]string{"DATA_DIR": "memory", "HOST": "127.0.0.1", "PORT": "0",
			"REDIS_URL": topo.URL(), "RATE_LIMIT": "0", "INSTANCE_ID": "ha-serve"}[k]
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	base := "http://" + m.Addr
	g := runMain(t, map[string]string{"HOST": "127.0.0.1", "PORT": "0", "REDIS_URL": topo.URL(), "API_URL": base,
		"INSTANCE_ID": "ha-gw", "CANARY_BOUND": "0"}, "gateway")
	gwBase := "http://" + g.Addr
	target := cluster.Target{API: base, Gateways: []string{base, gwBase}, Describe: "serve + gateway, Sentinel Redis, embedded store"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rec := history.NewRecorder(rand.Uint32())
	watchers, err := cluster.Watch(ctx, rec, target, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer watchers.Stop()
	// The probe: a client of the separate gateway alone, which notes when
	// the first pixel committed after the kill reaches it.
	var killedAt, recoveredAt atomic.Int64
	probe := client.New(client.Options{BaseURL: gwBase, SnapshotURL: base, Name: "probe", Fields: []string{protocol.FieldCommittedAt}, OnEvent: func(r client.Received) {
		if k := killedAt.Load(); k != 0 && r.Event.CommittedAt.UnixNano() > k && recoveredAt.Load() == 0 {
			recoveredAt.Store(r.ReceivedAt.UnixNano())
		}
	}})
	probeCtx, stopProbe := context.WithCancel(ctx)
	probeDone := make(chan struct{})
	go func() { defer close(probeDone); _ = probe.Run(probeCtx) }()
	defer func() { stopProbe(); <-probeDone }()

	// 100 writes a second for 8 s; the primary dies after 250.
	const total = 800
	pw := startPacedWrites(ctx, base, rec, 8, 100, total, 2)
	w, done := pw.w, pw.done
	waitAcked := func(n int) { t.Helper(); pw.waitAcked(ctx, t, n) }
	waitAcked(250)
	resume := func() error { return nil }
	if pause {
		primary, err := topo.Primary(ctx)
		if err != nil {
			t.Fatal(err)
		}
		direct := redis.NewClient(&redis.Options{Addr: primary.Addr()})
		defer direct.Close()
		st := stream.New(direct, m.Config.Canvas, 1000)
		at, err := st.Tail(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if resume, err = topo.PauseReplication(ctx); err != nil {
			t.Fatal(err)
		}
		// 20 entries published to the primary alone.
		for now := at; now.Epoch == at.Epoch && now.Seq < at.Seq+20; time.Sleep(5 * time.Millisecond) {
			if now, err = st.Tail(ctx); err != nil || ctx.Err() != nil {
				t.Fatalf("primary's tail %v (%v): the relay did not publish 20 entries during the pause", now, err)
			}
		}
	}
	before := g.gateway.Stats()
	old, err := topo.KillPrimary(ctx) // returns once the process is gone
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	killedAt.Store(killed.UnixNano())
	if err := resume(); err != nil {
		t.Fatal(err)
	}
	p, err := topo.WaitNewPrimary(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killed)
	if res := <-done; w.Acked() != res.Sent || res.Sent < total/2 {
		t.Fatalf("%d of %d writes sent were acknowledged (%d shed): a Redis failover must not fail a write", w.Acked(), res.Sent, res.Shed)
	}
	rep := cluster.Verify(ctx, t.Name(), target, rec, watchers, 45*time.Second, t.Logf)
	if probs := rep.Problems(); len(probs) > 0 {
		t.Fatalf("the history checker found: %v", probs)
	}
	gs, ss := g.gateway.Stats(), m.gateway.Stats()
	// The pause must have cost Redis entries it acknowledged, or the
	// repair path did not run: the relay republishes them from the outbox,
	// or, when the embedded store has pruned them already, starts an epoch.
	repaired := bytes.Contains(logs.Bytes(), []byte("relay: stream lost its newest entries")) ||
		bytes.Count(logs.Bytes(), []byte("relay: STARTED NEW STREAM EPOCH"))+
			bytes.Count(logs.Bytes(), []byte("relay: started the stream's first epoch")) > 1
	if pause && !repaired {
		t.Fatalf("the relay neither republished a lost tail nor started an epoch after a failover to a replica that missed entries: the fault did not bite")
	}
	if recoveredAt.Load() == 0 {
		t.Fatal("no pixel committed after the kill reached the separate gateway's probe")
	}
	recovered := time.Duration(recoveredAt.Load() - killed.UnixNano())
	events, lost, unexpected, dups := rep.Totals()
	t.Logf("primary %s killed at the gateway's seq %d; %s promoted %s after the kill; the first pixel committed after the kill "+
		"reached the separate gateway's client %s after it (epoch %s → %s, stream repaired: %v; resyncs sent: gateway %d, serve %d, one per client at connect); "+
		"%d writes acknowledged; clients: %d events, %d lost, %d unexpected, %d duplicated",
		old.Addr(), before.LastSeq, p.Addr(), promoted.Round(time.Millisecond), recovered.Round(time.Millisecond),
		before.Epoch, gs.Epoch, repaired, gs.Resyncs, ss.Resyncs, w.Acked(), events, lost, unexpected, dups)
}
