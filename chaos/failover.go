package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The failover drills of issue 30 item 4: Redis replicated as production
// runs it (a Sentinel-managed primary with a replica, a 3×2 Redis
// Cluster), its primary lost under load, for real. An asynchronous
// replica may lack the newest stream entries, consumer-group positions
// and even the epoch and term keys; the relay must notice a stream shorter
// than what it published, and the gateways groups that went back, exactly
// as after a tail loss. The deposed primary is then started again with its
// data (AOF) and must rejoin as a replica without changing anything.

// canvasKey is a key of the drills' canvas: its slot is the canvas's, on
// a Redis Cluster.
var canvasKey = stream.KeysFor(canvasName).Stream

// failoverPlan is one failover drill.
type failoverPlan struct {
	name, doc string
	mode      redisurl.Mode
	// lag pauses replication (SIGSTOP of the replicas, links cut) until
	// the primary has published entries no replica holds, then kills it.
	lag bool
	// planned asks for a failover (SENTINEL FAILOVER, CLUSTER FAILOVER)
	// instead of a kill: the old primary lives on and is demoted.
	planned bool
	// lagBestEffort: when the lag is not reached in time, the primary is
	// lost anyway (the nemesis, where another fault may stop the relay).
	lagBestEffort bool
}

// fault names what the drill does to the primary, for its log and checks.
func (p failoverPlan) fault() string {
	switch {
	case !p.planned:
		return "SIGKILL"
	case p.mode == redisurl.Cluster:
		return "CLUSTER FAILOVER (sent to its replica)"
	}
	return "SENTINEL FAILOVER"
}

// lagEntries is how many stream entries the primary publishes alone in
// the lagging drill before it dies.
const lagEntries = 20

// rejoinBound bounds how long the deposed primary may take, once it runs
// again, to become a caught-up replica of the new one: a Sentinel leaves
// an old primary that is back 8 s (4 hello periods) before it
// reconfigures it, and the full resync follows (13–17 s in all measured
// on two shared cores).
const rejoinBound = 30 * time.Second

// FailoverScenarios are the failover drills, in the order make chaos runs
// them.
func FailoverScenarios() []Scenario {
	return []Scenario{
		FailoverScenario(failoverPlan{name: "sentinel-primary-kill", mode: redisurl.Sentinel,
			doc: "Redis behind Sentinel (a primary, one replica, three Sentinels; REDIS_URL names the Sentinels): SIGKILL the primary while writes flow; the Sentinels promote the replica, the killed node is restarted with its data and rejoins as a replica. " +
				"Nothing lost, no sequence number names two events in one epoch, every client receives the pixels committed after the kill, writes keep returning 201."}),
		SentinelLaggingReplica(),
		FailoverScenario(failoverPlan{name: "sentinel-planned-failover", mode: redisurl.Sentinel, planned: true,
			doc: "SENTINEL FAILOVER under load: the replica is promoted and the old primary, still alive, is demoted to a replica of it. Nothing lost, no number reused, writes keep returning 201."}),
		FailoverScenario(failoverPlan{name: "cluster-primary-kill", mode: redisurl.Cluster,
			doc: "A 3×2 Redis Cluster (REDIS_URL names every node as a seed): SIGKILL the primary owning the canvas's slot while writes flow; its replica takes over, the killed node is restarted with its data and rejoins as a replica. " +
				"Nothing lost, no number reused, every client receives the pixels committed after the kill, writes keep returning 201."}),
		FailoverScenario(failoverPlan{name: "cluster-planned-failover", mode: redisurl.Cluster, planned: true,
			doc: "CLUSTER FAILOVER under load, sent to the replica of the canvas's slot: it takes over once it holds everything its primary acknowledged, and the old primary, still alive, becomes its replica (clients follow the MOVED redirections). Nothing lost, no number reused, writes keep returning 201."}),
		ClusterSlotMigration(),
	}
}

// SentinelLaggingReplica is the drill of a promoted replica that lacks
// acknowledged entries. extra are failpoints armed in every pixelflow
// process from the start: its teeth (TestDrillsHaveTeeth) run it with
// relay:trust-stream-tail=on, a relay that believes the short stream, and
// expect it to fail.
func SentinelLaggingReplica(extra ...string) Scenario {
	return FailoverScenario(failoverPlan{name: "sentinel-lagging-replica", mode: redisurl.Sentinel, lag: true,
		doc: fmt.Sprintf("As sentinel-primary-kill, but replication is paused first (the replica SIGSTOPped, its link cut) until the primary has published %d entries the replica lacks, with the gateways' group positions: the promoted replica's stream is behind what the store marked published. "+
			"The relay must notice the short stream and republish it or start a new epoch (clients resync); nothing lost, no number reused, the deposed primary rejoins holding the new primary's stream.", lagEntries)}, extra...)
}

// failoverRun is what one run of a failover drill saw, for its checks:
// written by the injection and its goroutine, read once done is closed.
type failoverRun struct {
	primaryLoss
	primaryRecovery
	// back is closed once the deposed primary runs again (restarted, or
	// never down: a planned failover) or the failover failed; done once
	// it is a replica again, or that failed.
	back, done chan struct{}
}

// primaryLoss is the fault half of a failover, which the drills and the
// nemesis's failover faults share: the primary lost as a plan says.
type primaryLoss struct {
	// old is the primary that was killed (or demoted).
	old     cluster.RedisNode
	faultAt time.Time
	// The lagging plans: the old primary's tail when it died, and the
	// promoted replica's before it was promoted.
	atKill, replicaHad canvas.Position
}

// primaryRecovery is the heal half: what recoverPrimary saw.
type primaryRecovery struct {
	// primary is the one promoted in old's place.
	primary   cluster.RedisNode
	promoted  time.Duration // after faultAt
	rejoined  time.Duration // the old primary a linked, caught-up replica, after faultAt
	restarted bool
	rejoinErr error
}

// FailoverScenario is the drill plan describes, with extra failpoints
// armed from the start (failpoint syntax).
func FailoverScenario(plan failoverPlan, extra ...string) Scenario {
	var run *failoverRun
	sc := Scenario{
		Name:    plan.name,
		Doc:     plan.doc,
		Cluster: cluster.Options{Redis: plan.mode},
		// Their performance figure is the time to recover (bounded, and in
		// the report); the P99 band after a fault is the single-node
		// drills' to prove, and five or six more redis-server processes
		// on two shared cores make its tail noise, not signal.
		CorrectnessOnly: true,
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			run = &failoverRun{back: make(chan struct{}), done: make(chan struct{})}
			return injectFailover(ctx, d, plan, run)
		},
		Check: func(d *Drill, r *Result) []Invariant { return checkFailover(d, r, plan, run) },
	}
	if len(extra) > 0 {
		sc.Cluster.Env = append(sc.Cluster.Env, "PIXELFLOW_FAILPOINTS="+strings.Join(extra, ";"))
	}
	return sc
}

// injectFailover loses the primary as plan says, and returns at once: a
// goroutine recovers (recoverPrimary). The heal waits for the restart
// only: a Sentinel leaves a primary that is back alone for 8 s before it
// demotes it, and that window, the deposed node up with its old data and
// role, must pass under traffic (the drain and after phases), not inside
// the fault window.
func injectFailover(ctx context.Context, d *Drill, plan failoverPlan, run *failoverRun) (func(context.Context) error, error) {
	loss, err := losePrimary(ctx, d, plan)
	if err != nil {
		return nil, err
	}
	run.primaryLoss = loss
	go func() {
		defer close(run.done)
		backOnce := sync.OnceFunc(func() { close(run.back) })
		defer backOnce()
		run.primaryRecovery = recoverPrimary(ctx, d, plan, loss, backOnce)
	}()
	return func(ctx context.Context) error {
		select {
		case <-run.back:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// losePrimary loses the primary as plan says: a SIGKILL, after replication
// was paused until the primary held entries its replica lacks (plan.lag),
// or a planned failover (plan.planned). Once the primary is lost the
// returned loss names it, even with an error: it must still be recovered.
func losePrimary(ctx context.Context, d *Drill, plan failoverPlan) (primaryLoss, error) {
	old, err := agreedPrimary(ctx, d.Cluster)
	if err != nil {
		return primaryLoss{}, fmt.Errorf("%s: %w", plan.name, err)
	}
	resume := func() error { return nil }
	if plan.lag {
		if resume, err = lagReplicas(ctx, d, plan, old); err != nil {
			return primaryLoss{}, err
		}
	}
	loss, err := dropPrimary(ctx, plan, d.Cluster, old)
	if err != nil {
		return loss, errorsJoin(fmt.Errorf("%s: %w", plan.name, err), resume())
	}
	d.Logf("%s: primary %s lost by %s", plan.name, loss.old.Addr(), plan.fault())
	if err := resume(); err != nil {
		return loss, fmt.Errorf("%s: resume replication: %w", plan.name, err)
	}
	if plan.lag {
		// Paused, the replica kept what it had when its link was cut: what
		// it holds now is what it will serve once promoted.
		if loss.replicaHad, err = replicaTail(ctx, d.Cluster, loss.old, plan.mode); err != nil {
			return loss, fmt.Errorf("%s: %w", plan.name, err)
		}
		d.Logf("%s: the primary died at %s; the replica to be promoted holds %s", plan.name, loss.atKill, loss.replicaHad)
	}
	return loss, nil
}

// agreedPrimary is the primary once the topology agrees on one, within
// 5 s (a Sentinel that has just seen a failover may still name the old).
func agreedPrimary(ctx context.Context, c *cluster.Cluster) (cluster.RedisNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		p, err := c.Primary(ctx, canvasKey)
		if err == nil {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the primary: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dropPrimary asks for a failover of old (plan.planned) or kills it,
// reading its tail first when the plan lags its replica.
func dropPrimary(ctx context.Context, plan failoverPlan, c *cluster.Cluster, old cluster.RedisNode) (primaryLoss, error) {
	var loss primaryLoss
	var err error
	if plan.planned {
		if loss.old, err = c.Failover(ctx, canvasKey); err != nil {
			return loss, err
		}
	} else {
		if plan.lag {
			if loss.atKill, err = nodeTail(ctx, old, plan.mode); err != nil {
				return loss, fmt.Errorf("the primary's tail before the kill: %w", err)
			}
		}
		if loss.old, err = c.KillPrimary(ctx, canvasKey); err != nil {
			return loss, err
		}
	}
	loss.faultAt = time.Now()
	return loss, nil
}

// recoverPrimary is the heal of a lost primary: it waits for the new
// primary, restarts a killed node with its data (a supervisor would),
// calls back once the deposed node runs again, and waits until it is a
// caught-up replica of the new primary (rejoinBound).
func recoverPrimary(ctx context.Context, d *Drill, plan failoverPlan, loss primaryLoss, back func()) (rec primaryRecovery) {
	c := d.Cluster
	ctx, cancel := context.WithTimeout(ctx, rejoinBound+10*time.Second)
	defer cancel()
	p, err := c.WaitNewPrimary(ctx, canvasKey, loss.old)
	rec.primary, rec.promoted = p, time.Since(loss.faultAt)
	if err != nil {
		rec.rejoinErr = fmt.Errorf("no new primary: %w", err)
		return rec
	}
	d.Logf("%s: %s promoted %.2fs after the fault", plan.name, p.Addr(), rec.promoted.Seconds())
	if !plan.planned {
		if err := loss.old.Restart(ctx, false); err != nil {
			rec.rejoinErr = fmt.Errorf("restart the deposed primary %s: %w", loss.old.Addr(), err)
			return rec
		}
		rec.restarted = true
	}
	back()
	rctx, rcancel := context.WithTimeout(ctx, rejoinBound)
	defer rcancel()
	if err := c.ReplicaOf(rctx, loss.old, p); err != nil {
		rec.rejoinErr = err
		return rec
	}
	rec.rejoined = time.Since(loss.faultAt)
	d.Logf("%s: the deposed primary %s is a caught-up replica of %s %.2fs after the fault", plan.name, loss.old.Addr(), p.Addr(), rec.rejoined.Seconds())
	return rec
}

// lagReplicas pauses replication and returns once the primary holds
// lagEntries stream entries its replicas lack. When the relay publishes
// too little in 5 s it fails, unless plan.lagBestEffort (a nemesis fault:
// another fault may have stopped the relay), which logs it and goes on
// with the replication paused.
func lagReplicas(ctx context.Context, d *Drill, plan failoverPlan, primary cluster.RedisNode) (func() error, error) {
	mode := d.Cluster.Topology.Redis
	resume, err := d.Cluster.PauseReplication(ctx, canvasKey)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", plan.name, err)
	}
	// Counted from after the links were cut: what the primary sent
	// before may still reach the stopped replicas' sockets.
	at, err := nodeTail(ctx, primary, mode)
	if err != nil {
		return nil, errorsJoin(fmt.Errorf("%s: the primary's tail: %w", plan.name, err), resume())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := nodeTail(ctx, primary, mode)
		if err == nil && (now.Epoch != at.Epoch || now.Seq >= at.Seq+lagEntries) {
			return resume, nil
		}
		if time.Now().After(deadline) {
			short := fmt.Errorf("%s: the relay published no %d entries in 5s while replication was paused (tail %s → %s, %v)", plan.name, lagEntries, at, now, err)
			if plan.lagBestEffort {
				d.Logf("%v; the primary is lost anyway", short)
				return resume, nil
			}
			return nil, errorsJoin(short, resume())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The nemesis's failover faults (issue 30 item 4: the same faults in the
// nemesis) are the Sentinel drills' losses of the primary, drawn in a
// schedule among the other faults. Held for at least the Sentinels'
// promotion (a kill is noticed after DownAfter, 1 s, and the replica
// promoted 2.4–2.6 s after it; a planned failover 1.2–1.4 s: see
// docs/testing.md), so it falls inside the window, and healed as the
// drills recover. The heal waits for the whole rejoin (up to rejoinBound):
// the fault's target, "redis", is then free for the next, so two losses of
// a primary never overlap and each starts on a topology that is whole.
const (
	failoverKillHold    = 3 * time.Second
	failoverPlannedHold = 2 * time.Second
	failoverMaxHold     = 8 * time.Second
	// failoverSettle is what a failover's heal takes: the deposed primary
	// a caught-up replica 13–17 s after it is back (rejoinBound).
	failoverSettle = 15 * time.Second
)

// failoverFaults are the nemesis's faults of a Sentinel-replicated Redis,
// in catalogue order. They may bend writes while active.
func failoverFaults() []Fault {
	return []Fault{
		failoverFault(failoverPlan{name: "failover:kill-primary",
			doc: "SIGKILL the Sentinels' primary; healed once a replica is promoted, the killed node restarted with its data (AOF) and a caught-up replica of the new primary"}, failoverKillHold),
		failoverFault(failoverPlan{name: "failover:lagging", lag: true, lagBestEffort: true,
			doc: fmt.Sprintf("replication paused (the replica SIGSTOPped, its link cut) until the primary has %d stream entries the replica lacks (at most 5 s), then the primary SIGKILLed; healed as failover:kill-primary", lagEntries)}, failoverKillHold),
		failoverFault(failoverPlan{name: "failover:planned", planned: true,
			doc: "SENTINEL FAILOVER: the replica promoted, the old primary demoted alive; healed once it is a caught-up replica of the new primary"}, failoverPlannedHold),
	}
}

// failoverInjectBound bounds a failover fault's injection: the lag (5 s)
// and a SENTINEL FAILOVER that keeps answering NOGOODSLAVE.
const failoverInjectBound = 20 * time.Second

// failoverFault is the nemesis fault of plan, on a Sentinel: inject loses
// the primary (losePrimary), the heal recovers it (recoverPrimary). A
// primary lost before the injection failed is recovered at once.
func failoverFault(plan failoverPlan, minHold time.Duration) Fault {
	plan.mode = redisurl.Sentinel
	return Fault{Name: plan.name, Target: "redis", Bends: []string{BendWrites}, Doc: plan.doc, MinHold: minHold, MaxHold: failoverMaxHold, Settle: failoverSettle,
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			ictx, cancel := context.WithTimeout(ctx, failoverInjectBound)
			defer cancel()
			loss, err := losePrimary(ictx, d, plan)
			heal := func(ctx context.Context) error {
				return recoverPrimary(ctx, d, plan, loss, func() {}).rejoinErr
			}
			switch {
			case err != nil && loss.old != nil:
				return nil, errorsJoin(err, heal(context.WithoutCancel(ctx)))
			case err != nil:
				return nil, err
			}
			return heal, nil
		}}
}

// errorsJoin joins err with a cleanup's error.
func errorsJoin(err, cleanup error) error {
	if cleanup != nil {
		return fmt.Errorf("%w (and: %v)", err, cleanup)
	}
	return err
}

// nodeClient is a client of one data node alone, reading what that node
// holds (a cluster replica answers reads after READONLY).
func nodeClient(n cluster.RedisNode, mode redisurl.Mode) *redis.Client {
	o := &redis.Options{Addr: n.Addr(), DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, PoolSize: 1}
	if mode == redisurl.Cluster {
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error { return cn.ReadOnly(ctx).Err() }
	}
	return redis.NewClient(o)
}

// nodeTail is the canvas stream's tail on one node.
func nodeTail(ctx context.Context, n cluster.RedisNode, mode redisurl.Mode) (canvas.Position, error) {
	cl := nodeClient(n, mode)
	defer cl.Close()
	return stream.New(cl, canvasName, 0).Tail(ctx)
}

// replicaTail is the tail on the replica that will be promoted in old's
// place: the one data node that is not old (the drills run one replica).
func replicaTail(ctx context.Context, c *cluster.Cluster, old cluster.RedisNode, mode redisurl.Mode) (canvas.Position, error) {
	if c.Sentinel == nil {
		return canvas.Position{}, fmt.Errorf("the lagging drill runs on Sentinel")
	}
	for _, n := range c.Sentinel.Nodes {
		if n != old {
			return nodeTail(ctx, n, mode)
		}
	}
	return canvas.Position{}, fmt.Errorf("no replica beside %s", old.Addr())
}

// checkFailover holds a failover drill to what issue 30 asks of it.
func checkFailover(d *Drill, r *Result, plan failoverPlan, run *failoverRun) []Invariant {
	if run == nil {
		return []Invariant{{"the failover happened", false, "the fault was never injected"}}
	}
	<-run.done
	var out []Invariant
	promoted := run.primary != nil
	out = append(out, Invariant{"a replica was promoted", promoted,
		fmt.Sprintf("%s promoted %.2fs after the %s of %s", addr(run.primary), run.promoted.Seconds(), plan.fault(), run.old.Addr())})
	rejoinFig := fmt.Sprintf("%s (restarted with its AOF: %v) was a caught-up replica of %s %.2fs after the fault", run.old.Addr(), run.restarted, addr(run.primary), run.rejoined.Seconds())
	if run.rejoinErr != nil {
		rejoinFig = run.rejoinErr.Error()
	}
	out = append(out, Invariant{"the deposed primary rejoined as a replica", run.rejoinErr == nil && (run.restarted || plan.planned), rejoinFig})
	if promoted && run.rejoinErr == nil {
		out = append(out, afterRejoin(d), sameData(plan.mode, run.old, run.primary))
	}
	out = append(out, recovered(d, r, run.faultAt), numbersUnique(d))
	d.Logf("%s: the relay %s", plan.name, repairSeen(d))
	if plan.lag {
		lacked := run.atKill.Epoch == run.replicaHad.Epoch && run.replicaHad.Seq < run.atKill.Seq
		out = append(out, Invariant{"the promoted replica lacked acknowledged entries", lacked,
			fmt.Sprintf("the primary died at %s, the replica held %s (%d entries behind); the relay %s", run.atKill, run.replicaHad, int64(run.atKill.Seq)-int64(run.replicaHad.Seq), repairSeen(d))})
	}
	return out
}

func addr(n cluster.RedisNode) string {
	if n == nil {
		return "no node"
	}
	return n.Addr()
}

// rejoinProbes is how many new pixels afterRejoin paints.
const rejoinProbes = 8

// afterRejoin paints new pixels once the deposed primary is a replica
// again (on a Sentinel that may be after the history was judged) and
// requires every client to receive them: the rejoin broke nothing.
func afterRejoin(d *Drill) Invariant {
	return paintedAfter(d, "the rejoin", "the deposed primary rejoined")
}

// paintedAfter paints rejoinProbes new pixels and requires every client to
// receive them: what happened before (event, as the invariant names it;
// since, as its figure says it) broke nothing.
func paintedAfter(d *Drill, event, since string) Invariant {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	var last history.Write
	ok := 0
	for i := range rejoinProbes {
		if w := d.Writer.Place(ctx, region+i, region+1); w.Outcome == history.OK {
			ok++
			last = w
		}
	}
	at, all := time.Time{}, false
	if ok == rejoinProbes {
		at, all = d.Watchers.CaughtUp(ctx, last, 10*time.Second)
	}
	return Invariant{"pixels painted after " + event + " reach every client", all,
		fmt.Sprintf("%d of %d new pixels acknowledged after %s; every client had them %.2fs after the first was sent: %v", ok, rejoinProbes, since, at.Sub(start).Seconds(), all)}
}

// sameData: the deposed primary, a replica again, holds exactly the
// primary's stream, epoch and term: whatever it had of its own (entries
// the replica lacked, an older epoch) is gone, not merged back.
func sameData(mode redisurl.Mode, old, primary cluster.RedisNode) Invariant {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys := stream.KeysFor(canvasName)
	read := func(n cluster.RedisNode) (string, error) {
		cl := nodeClient(n, mode)
		defer cl.Close()
		entries, err := cl.XRange(ctx, keys.Stream, "-", "+").Result()
		if err != nil {
			return "", fmt.Errorf("xrange on %s: %w", n.Addr(), err)
		}
		epoch, err := cl.Get(ctx, keys.Epoch).Result()
		if err != nil && err != redis.Nil {
			return "", fmt.Errorf("epoch on %s: %w", n.Addr(), err)
		}
		term, err := cl.Get(ctx, keys.Term).Result()
		if err != nil && err != redis.Nil {
			return "", fmt.Errorf("term on %s: %w", n.Addr(), err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "epoch %s term %s, %d entries", epoch, term, len(entries))
		if len(entries) > 0 {
			fmt.Fprintf(&b, " %s..%s", entries[0].ID, entries[len(entries)-1].ID)
		}
		for _, e := range entries {
			fmt.Fprintf(&b, "|%s=%v", e.ID, e.Values["id"])
		}
		return b.String(), nil
	}
	// Canaries still flow after the drill: compare until two reads agree.
	var a, b string
	var err error
	for ctx.Err() == nil {
		if a, err = read(primary); err == nil {
			if b, err = read(old); err == nil && a == b {
				head, _, _ := strings.Cut(a, "|")
				return Invariant{"the deposed primary changed nothing", true, fmt.Sprintf("%s holds the primary's stream, epoch and term (%s)", old.Addr(), head)}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return Invariant{"the deposed primary changed nothing", false, err.Error()}
	}
	ha, _, _ := strings.Cut(a, "|")
	hb, _, _ := strings.Cut(b, "|")
	return Invariant{"the deposed primary changed nothing", false, fmt.Sprintf("primary %s: %s; deposed %s: %s", primary.Addr(), ha, old.Addr(), hb)}
}

// recovered: every client received, again, pixels committed after the
// fault, and the drill's time to recover, kept in the report, is the
// longest any client went without a pixel from the fault until a few
// seconds after the heal (writes flow all along, 100 a second): for a
// kill the time to the first pixel after it, for a planned failover the
// stall of its switch (a resync, when it cost an epoch).
func recovered(d *Drill, r *Result, faultAt time.Time) Invariant {
	until := d.Start.Add(time.Duration((r.FaultEnd + 4) * float64(time.Second)))
	var stall, firstAfter time.Duration
	missing := 0
	for _, cl := range d.Watchers.Clients {
		prev, first := faultAt, time.Time{}
		for _, rc := range cl.History() {
			if rc.Event.Kind == canvas.KindCanary || rc.ReceivedAt.Before(faultAt) || rc.ReceivedAt.After(until) {
				continue
			}
			stall = max(stall, rc.ReceivedAt.Sub(prev))
			prev = rc.ReceivedAt
			if first.IsZero() && rc.Event.CommittedAt.After(faultAt) {
				first = rc.ReceivedAt
			}
		}
		if first.IsZero() {
			missing++
			continue
		}
		firstAfter = max(firstAfter, first.Sub(faultAt))
	}
	r.RecoverySeconds = stall.Seconds()
	bound := d.Profile.DrainBound
	return Invariant{"deliveries resumed after the failover", missing == 0 && stall <= bound,
		fmt.Sprintf("time to recover %.2fs: the longest any client went without a pixel after the fault; every client had a pixel committed after the fault %.2fs after it (%d clients never did; bound %s)", stall.Seconds(), firstAfter.Seconds(), missing, bound)}
}

// numbersUnique: across every client's history, no (epoch, sequence)
// position carried two different events. A relay that trusted a promoted
// replica's shorter stream would hand those numbers out again.
func numbersUnique(d *Drill) Invariant {
	type pos struct {
		epoch string
		seq   uint64
	}
	seen := map[pos]string{}
	var clashes []string
	for _, cl := range d.Watchers.Clients {
		for _, rc := range cl.History() {
			p := pos{rc.Epoch, rc.Event.Seq}
			if id, ok := seen[p]; !ok {
				seen[p] = rc.Event.ID
			} else if id != rc.Event.ID && len(clashes) < 5 {
				clashes = append(clashes, fmt.Sprintf("%s:%d is %s and %s", p.epoch, p.seq, id, rc.Event.ID))
			}
		}
	}
	epochs := map[string]bool{}
	for p := range seen {
		epochs[p.epoch] = true
	}
	slices.Sort(clashes)
	return Invariant{"no sequence number names two events in one epoch", len(clashes) == 0,
		fmt.Sprintf("%d positions over %d epochs seen by %d clients; clashes: %v", len(seen), len(epochs), len(d.Watchers.Clients), clashes)}
}

// repairSeen says how the relay repaired the stream after the failover,
// from the logs of the processes that run it: the lost tail republished,
// or new epochs and why.
func repairSeen(d *Drill) string {
	var how []string
	for _, p := range d.Cluster.RelayHosts() {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			switch {
			case strings.Contains(line, "relay: stream lost its newest entries"):
				how = append(how, p.Name+" republished the lost entries")
			case strings.Contains(line, "relay: STARTED NEW STREAM EPOCH"):
				var l struct{ Why string }
				_ = json.Unmarshal([]byte(line), &l)
				how = append(how, fmt.Sprintf("%s started a new epoch (%s)", p.Name, l.Why))
			}
		}
	}
	if len(how) == 0 {
		return "repaired nothing: the stream was whole"
	}
	return strings.Join(how, "; ")
}
