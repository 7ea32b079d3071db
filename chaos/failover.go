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
	// old is the primary that was killed (or demoted), primary the one
	// promoted in its place.
	old, primary cluster.RedisNode
	faultAt      time.Time
	promoted     time.Duration // after faultAt
	rejoined     time.Duration // the old primary a linked, caught-up replica, after faultAt
	restarted    bool
	rejoinErr    error
	// The lagging drill: the old primary's tail when it died, and the
	// promoted replica's before it was promoted.
	atKill, replicaHad canvas.Position
	// back is closed once the deposed primary runs again (restarted, or
	// never down: a planned failover) or the failover failed; done once
	// it is a replica again, or that failed.
	back, done chan struct{}
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
// goroutine waits for the new primary, restarts a killed node (a
// supervisor would) and waits until it is a replica of the new primary.
// The heal waits for the restart only: a Sentinel leaves a primary that is
// back alone for 8 s before it demotes it, and that window, the deposed
// node up with its old data and role, must pass under traffic (the drain
// and after phases), not inside the fault window.
func injectFailover(ctx context.Context, d *Drill, plan failoverPlan, run *failoverRun) (func(context.Context) error, error) {
	c := d.Cluster
	old, err := c.Primary(ctx, canvasKey)
	if err != nil {
		return nil, err
	}
	resume := func() error { return nil }
	if plan.lag {
		if resume, err = lagReplicas(ctx, d, old, run); err != nil {
			return nil, err
		}
	}
	if plan.planned {
		if old, err = c.Failover(ctx, canvasKey); err != nil {
			return nil, err
		}
	} else {
		if plan.lag {
			if run.atKill, err = nodeTail(ctx, old, plan.mode); err != nil {
				return nil, fmt.Errorf("the primary's tail before the kill: %w", err)
			}
		}
		if old, err = c.KillPrimary(ctx, canvasKey); err != nil {
			return nil, err
		}
	}
	run.old, run.faultAt = old, time.Now()
	d.Logf("%s: primary %s lost by %s", plan.name, old.Addr(), plan.fault())
	if err := resume(); err != nil {
		return nil, err
	}
	if plan.lag {
		// Paused, the replica kept what it had when its link was cut: what
		// it holds now is what it will serve once promoted.
		if run.replicaHad, err = replicaTail(ctx, c, old, plan.mode); err != nil {
			return nil, err
		}
		d.Logf("%s: the primary died at %s; the replica to be promoted holds %s", plan.name, run.atKill, run.replicaHad)
	}
	go func() {
		defer close(run.done)
		backOnce := sync.OnceFunc(func() { close(run.back) })
		defer backOnce()
		ctx, cancel := context.WithTimeout(ctx, rejoinBound+10*time.Second)
		defer cancel()
		p, err := c.WaitNewPrimary(ctx, canvasKey, old)
		run.primary, run.promoted = p, time.Since(run.faultAt)
		if err != nil {
			run.rejoinErr = fmt.Errorf("no new primary: %w", err)
			return
		}
		d.Logf("%s: %s promoted %.2fs after the fault", plan.name, p.Addr(), run.promoted.Seconds())
		if !plan.planned {
			if err := old.Restart(ctx, false); err != nil {
				run.rejoinErr = fmt.Errorf("restart the deposed primary %s: %w", old.Addr(), err)
				return
			}
			run.restarted = true
		}
		backOnce()
		rctx, rcancel := context.WithTimeout(ctx, rejoinBound)
		defer rcancel()
		if err := c.ReplicaOf(rctx, old, p); err != nil {
			run.rejoinErr = err
			return
		}
		run.rejoined = time.Since(run.faultAt)
		d.Logf("%s: the deposed primary %s is a caught-up replica of %s %.2fs after the fault", plan.name, old.Addr(), p.Addr(), run.rejoined.Seconds())
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

// lagReplicas pauses replication and returns once the primary holds
// lagEntries stream entries its replicas lack.
func lagReplicas(ctx context.Context, d *Drill, primary cluster.RedisNode, run *failoverRun) (func() error, error) {
	mode := d.Cluster.Topology.Redis
	resume, err := d.Cluster.PauseReplication(ctx, canvasKey)
	if err != nil {
		return nil, err
	}
	// Counted from after the links were cut: what the primary sent
	// before may still reach the stopped replicas' sockets.
	at, err := nodeTail(ctx, primary, mode)
	if err != nil {
		return nil, errorsJoin(fmt.Errorf("the primary's tail: %w", err), resume())
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		now, err := nodeTail(ctx, primary, mode)
		if err == nil && (now.Epoch != at.Epoch || now.Seq >= at.Seq+lagEntries) {
			return resume, nil
		}
		if time.Now().After(deadline) {
			return nil, errorsJoin(fmt.Errorf("the relay published no %d entries in 5s while replication was paused (tail %s → %s, %v)", lagEntries, at, now, err), resume())
		}
		time.Sleep(5 * time.Millisecond)
	}
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
	return Invariant{"pixels painted after the rejoin reach every client", all,
		fmt.Sprintf("%d of %d new pixels acknowledged after the deposed primary rejoined; every client had them %.2fs after the first was sent: %v", ok, rejoinProbes, at.Sub(start).Seconds(), all)}
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
