package chaos

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestDrillsHaveTeeth runs drills with a fix switched off by a failpoint
// (restoring the defect it fixed) and requires them to fail: a drill that
// passes whatever the code does proves nothing. Each case names the issue
// item whose defect it re-creates.
func TestDrillsHaveTeeth(t *testing.T) {
	p := Profiles()["short"]
	for _, c := range []struct {
		name string
		sc   Scenario
		// by, when set, lists invariants of which at least one must be
		// among the failed: the defect is caught by what it breaks, not
		// by a drill whose fault did not happen.
		by []string
	}{
		// Issue 12 item 1: a successor that ignores the open claim's
		// recorded numbers gives the numbers Redis lost to other events.
		{"relay-crash-tail-loss without claim numbers", RelayCrashTailLoss("relay:forget-claim=on"), nil},
		// Delivery correctness round, flaky P99: a Redis that fsyncs
		// before every reply (appendfsync always) puts each disk stall on
		// the delivery path.
		{"redis-slow-disk with fsync before every reply", fsyncEveryWrite(RedisSlowDisk()), nil},
		// Issue 28 item 1: a gateway that reads the epoch apart from
		// creating its group, and trusts a leftover group, joins the new
		// epoch at its old position and skips the pixels painted below it.
		{"gateway-rejoin-new-epoch with the old join", GatewayRejoinNewEpoch("gateway:keep-stale-group=on"), []string{"nothing lost", "clients converge"}},
		// Issue 30 item 4: a relay that believes the stream of a replica
		// promoted without the newest entries numbers on after its tail,
		// giving numbers clients hold to other events.
		{"sentinel-lagging-replica trusting the short stream", convergeWithin(SentinelLaggingReplica("relay:trust-stream-tail=on"), 15*time.Second), []string{"nothing lost", "no sequence number names two events in one epoch"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			res := Run(ctx, t, c.sc, p, env.bin, env.provider)
			if res.Status == "not run" {
				t.Fatalf("%s not run (%s): the teeth test needs it", c.sc.Name, res.Why)
			}
			if !res.Failed() {
				t.Fatalf("%s passed with the fix switched off: it cannot catch the defect", c.sc.Name)
			}
			caught := len(c.by) == 0
			for _, inv := range res.Invariants {
				if !inv.Pass {
					t.Logf("caught, as it must: %s: %s", inv.Name, inv.Figure)
					caught = caught || slices.Contains(c.by, inv.Name)
				} else {
					t.Logf("held: %s: %s", inv.Name, inv.Figure)
				}
			}
			if !caught {
				t.Fatalf("%s failed, but none of %q did: the defect was not what it caught", c.sc.Name, c.by)
			}
		})
	}
}

// convergeWithin bounds sc's final drain: with the defect its clients
// never converge, and waiting the default minute for them proves nothing
// more.
func convergeWithin(sc Scenario, d time.Duration) Scenario {
	sc.Converge = d
	return sc
}

// fsyncEveryWrite runs sc on a Redis that fsyncs before every reply.
func fsyncEveryWrite(sc Scenario) Scenario {
	sc.Cluster.RedisFsyncEveryWrite = true
	return sc
}
