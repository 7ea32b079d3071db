package chaos

import (
	"context"
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
	}{
		// Issue 12 item 1: a successor that ignores the open claim's
		// recorded numbers gives the numbers Redis lost to other events.
		{"relay-crash-tail-loss without claim numbers", RelayCrashTailLoss("relay:forget-claim=on")},
		// Delivery correctness round, flaky P99: a Redis that fsyncs
		// before every reply (appendfsync always) puts each disk stall on
		// the delivery path.
		{"redis-slow-disk with fsync before every reply", fsyncEveryWrite(RedisSlowDisk())},
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
			for _, inv := range res.Invariants {
				if !inv.Pass {
					t.Logf("caught, as it must: %s: %s", inv.Name, inv.Figure)
				}
			}
		})
	}
}

// fsyncEveryWrite runs sc on a Redis that fsyncs before every reply.
func fsyncEveryWrite(sc Scenario) Scenario {
	sc.Cluster.RedisFsyncEveryWrite = true
	return sc
}
