package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// migrateKeyGap is the pause between two keys of the canvas's slot moved
// by the drill: the canvas's keys (stream, epoch, term, …) stay split
// across two primaries for about a second, so the relay's scripts and the
// gateways' reads meet ASK and TRYAGAIN, not only the final MOVED.
const migrateKeyGap = 200 * time.Millisecond

// slotMigrationRun is what the drill's injection saw, read once done is
// closed.
type slotMigrationRun struct {
	faultAt time.Time
	before  redistopo.Redirections
	m       redistopo.Migration
	err     error
	done    chan struct{}
}

// ClusterSlotMigration is the drill of an online resharding: the slot of
// the canvas's keys moved from its primary to another one under writes.
func ClusterSlotMigration() Scenario {
	var run *slotMigrationRun
	return Scenario{
		Name: "cluster-slot-migration",
		Doc: fmt.Sprintf("A 3×2 Redis Cluster: the canvas's slot migrated online to another primary under writes (SETSLOT IMPORTING/MIGRATING, its keys moved one MIGRATE at a time, %s apart, then SETSLOT NODE), so the relay and gateways meet ASK, TRYAGAIN and MOVED while the canvas's keys are split across two nodes. ", migrateKeyGap) +
			"Nothing lost, no number reused, every client receives the pixels painted after the migration, writes keep returning 201; fails if no ASK or MOVED was answered.",
		Cluster:         cluster.Options{Redis: redisurl.Cluster},
		CorrectnessOnly: true, // as the failover drills: the time to recover is its figure
		Skip: func(c *cluster.Cluster) string {
			if c.RedisCluster == nil {
				return "needs a Redis Cluster"
			}
			return ""
		},
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			run = &slotMigrationRun{done: make(chan struct{})}
			return injectSlotMigration(ctx, d, run)
		},
		Check: func(d *Drill, r *Result) []Invariant { return checkSlotMigration(d, r, run) },
	}
}

// injectSlotMigration starts moving the canvas's slot to a primary that
// does not own it and returns at once; the heal waits for the move.
func injectSlotMigration(ctx context.Context, d *Drill, run *slotMigrationRun) (func(context.Context) error, error) {
	rc := d.Cluster.RedisCluster
	slot, err := rc.Slot(ctx, canvasKey)
	if err != nil {
		return nil, err
	}
	from, err := rc.PrimaryFor(ctx, canvasKey)
	if err != nil {
		return nil, err
	}
	primaries, err := rc.Primaries(ctx)
	if err != nil {
		return nil, err
	}
	var to cluster.RedisNode
	for _, p := range primaries {
		if p != from {
			to = p
			break
		}
	}
	if to == nil {
		return nil, fmt.Errorf("no primary beside %s to move slot %d to", from.Addr(), slot)
	}
	if run.before, err = rc.Redirections(ctx); err != nil {
		return nil, err
	}
	rc.MigrateKeyGap = migrateKeyGap
	run.faultAt = time.Now()
	d.Logf("cluster-slot-migration: moving slot %d from %s to %s", slot, from.Addr(), to.Addr())
	go func() {
		defer close(run.done)
		mctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		run.m, run.err = rc.MigrateSlot(mctx, slot, to)
		if run.err == nil {
			d.Logf("cluster-slot-migration: %d keys moved in %.2fs", run.m.Keys, run.m.Took.Seconds())
		}
	}()
	return func(ctx context.Context) error {
		select {
		case <-run.done:
			return run.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// checkSlotMigration: the slot moved, the clients met the migration (ASK
// or MOVED answered), and the failover drills' criteria hold.
func checkSlotMigration(d *Drill, r *Result, run *slotMigrationRun) []Invariant {
	if run == nil {
		return []Invariant{{"the slot migrated", false, "the fault was never injected"}}
	}
	<-run.done
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []Invariant
	moved := run.err == nil
	fig := fmt.Sprintf("slot %d: %d keys moved from %s to %s in %.2fs", run.m.Slot, run.m.Keys, addr(run.m.From), addr(run.m.To), run.m.Took.Seconds())
	if run.err != nil {
		fig = run.err.Error()
	} else if p, err := d.Cluster.RedisCluster.PrimaryFor(ctx, canvasKey); err != nil || p != run.m.To {
		moved, fig = false, fmt.Sprintf("%s; but the cluster names %s its primary (%v)", fig, addr(p), err)
	}
	out = append(out, Invariant{"the canvas's slot migrated to another primary", moved && run.m.Keys > 0, fig})
	after, err := d.Cluster.RedisCluster.Redirections(ctx)
	red := after.Sub(run.before)
	d.Facts["ask"], d.Facts["moved"], d.Facts["tryagain"] = float64(red.Ask), float64(red.Moved), float64(red.TryAgain)
	redFig := red.String() + " answered by the nodes from the migration's start to the checks (INFO errorstats)"
	if err != nil {
		redFig = err.Error()
	}
	out = append(out, Invariant{"clients met the migration (ASK or MOVED)", err == nil && red.Ask+red.Moved > 0, redFig})
	out = append(out, paintedAfter(d, "the migration", "the slot migrated"), recovered(d, r, run.faultAt), numbersUnique(d))
	return out
}
