package relay_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// markUnreplicated switches WaitReplicas off in a test-only way (the
// relay:mark-unreplicated failpoint), so a test can show what it prevents.
func markUnreplicated(name string) error {
	if name == "relay:mark-unreplicated" {
		return errors.New("setting off")
	}
	return nil
}

// TestWaitReplicasHoldsTheMark: with WaitReplicas 1 and a Redis that has
// no replica, the relay appends (gateways could deliver) but never marks
// the outbox, counts each refusal and says why; switched off, the same
// relay drains.
func TestWaitReplicasHoldsTheMark(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := map[bool]string{true: "on", false: "switched off"}[on]
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, false)
			opts := relay.Options{WaitReplicas: 1, WaitTimeout: 20 * time.Millisecond}
			if !on {
				opts.Failpoint = markUnreplicated
			}
			r, _, _ := e.startRelay("r", opts)
			ids := e.write(10)
			if !on {
				e.waitDrained(10 * time.Second)
				e.checkExactlyOnce(ids)
				return
			}
			e.waitStream(10, 10*time.Second)
			deadline := time.Now().Add(10 * time.Second)
			for r.Status().NotReplicated < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("no held marks counted: %+v", r.Status())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if n, _, err := e.store.Backlog(context.Background()); err != nil || n != 10 {
				t.Fatalf("outbox backlog %d (%v), want all 10 unmarked while no replica acknowledges", n, err)
			}
			st := r.Status()
			if st.Published != 0 || !strings.Contains(st.LastError, "REDIS_WAIT_REPLICAS=1") || !strings.Contains(st.LastError, "0 of 1 replicas") {
				t.Fatalf("status %+v: want nothing marked and an error naming the setting", st)
			}
			e.checkExactlyOnce(ids) // appended once, however often the mark was retried
		})
	}
}

// TestWaitReplicasFailoverKeepsTheEpoch: a primary with two replicas whose
// replication is paused, then SIGKILLed, so Sentinel promotes a replica
// that lacks the newest entries. With WaitReplicas 1 those entries were
// never marked: the relay finds them in its open claim and appends them
// again under their numbers, in the same epoch, so no client resyncs,
// however long ago the outbox pruned what it had marked. (Without the
// setting the relay republishes lost marked entries from the outbox's
// batch records while RETENTION keeps them, and starts a new epoch
// after: measured here, the switched-off case kept its epoch too, so it
// is not asserted.)
func TestWaitReplicasFailoverKeepsTheEpoch(t *testing.T) {
	s := redistopo.StartSentinel(t, redistopo.SentinelOptions{Replicas: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	st, err := store.Open(ctx, "", "", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close(context.Background()) })
	target, err := redisurl.Parse(s.URL()) // the client REDIS_URL makes
	if err != nil {
		t.Fatal(err)
	}
	rdb := target.Client()
	t.Cleanup(func() { _ = rdb.Close() })
	e := &env{t: t, store: st, rdb: rdb, st: stream.New(rdb, "main", 1_000_000)}

	opts := relay.Options{WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond}
	r, _, _ := e.startRelay("r", opts)
	ids := e.write(20)
	e.waitDrained(20 * time.Second)
	epoch := e.streamEntries()[0].Epoch
	if err := s.WaitReplicasLinked(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 2, 5000).Int(); err != nil || n != 2 {
		t.Fatalf("replicas caught up: %d (%v)", n, err)
	}

	resume, err := s.PauseReplication(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, e.write(30)...)
	// The first claim reaches the stream; its mark, and so every
	// later claim, waits for a replica.
	e.waitStream(21, 20*time.Second)
	if n, _, err := st.Backlog(ctx); err != nil || n == 0 {
		t.Fatalf("backlog %d (%v): the entries no replica has were marked", n, err)
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
	for rdb.Ping(ctx).Err() != nil { // the client follows the Sentinels
		if ctx.Err() != nil {
			t.Fatal("the client never reached the new primary")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ids = append(ids, e.write(5)...) // a publish finds the stream short
	e.waitDrained(30 * time.Second)
	e.waitStream(55, 20*time.Second)
	e.checkExactlyOnce(ids)
	if entries := e.streamEntries(); entries[0].Epoch != epoch {
		t.Fatalf("epoch %s after the failover, want %s kept", entries[0].Epoch, epoch)
	}
	if got := r.Status().EpochChanges; got != 1 {
		t.Fatalf("%d epoch changes, want only the first start", got)
	}
}
