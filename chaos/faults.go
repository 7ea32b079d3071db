package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The drills of issue 12: pauses (SIGSTOP/SIGCONT) of every kind of
// process, Redis losing its newest writes, and the relay crashing between
// its XADD and its mark followed by that loss.

// leaseTTL is the relay lease e2e clusters run with (cluster.Cluster's
// LEASE_TTL); the pauses outlast it.
const leaseTTL = 2 * time.Second

// groupTTL is the gateways' group TTL in the gateway-pause drill: short
// enough that the short profile's 5 s pause outlasts it with room.
const groupTTL = 2 * time.Second

// pauseScenarios are the pause drills.
func pauseScenarios() []Scenario {
	return []Scenario{
		{
			Name: "api-pause",
			Doc: "SIGSTOP the api process past LEASE_TTL, then SIGCONT (with the embedded store, the process that owns the store and runs the relay: a GC pause or a frozen VM). " +
				"Writes time out while it is frozen; the relay finds its lease lapsed and re-acquires it; nothing acknowledged is lost and clients converge.",
			WritesMayFail: true,
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return pause(d, d.Cluster.API)
			},
			Check: func(d *Drill, r *Result) []Invariant { return []Invariant{stalled(r, leaseTTL, "LEASE_TTL")} },
		},
		{
			Name: "relay-pause",
			Doc: "SIGSTOP the leading relay process past LEASE_TTL: the standby takes over; when the paused one resumes it must find itself deposed and publish nothing more " +
				"(every Redis write it makes is fenced); no loss, no sequence reused.",
			Skip: func(c *cluster.Cluster) string {
				if len(c.Relays) < 2 {
					return "the embedded store lives in the api process, so its relay does too: there is no standby relay to take over (api-pause freezes that process instead). Runs on MongoDB (docker provider or mongod on PATH)."
				}
				return ""
			},
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				active, err := activeRelay(ctx, d.Cluster)
				if err != nil {
					return nil, err
				}
				return pause(d, active)
			},
		},
		{
			Name: "gateway-pause",
			Doc: fmt.Sprintf("SIGSTOP one of two gateways past GROUP_TTL (%s here): the other reaps its consumer group as a dead gateway's. "+
				"After SIGCONT it recreates its group and fills the gap from the stream; its clients converge (resume or resync allowed); writes keep returning 201.", groupTTL),
			Cluster: cluster.Options{Env: []string{"GROUP_TTL=" + groupTTL.String()}},
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				g := d.Cluster.Gateways[0]
				other := d.Cluster.Gateways[1]
				before, err := reaped(ctx, other.URL())
				if err != nil {
					return nil, err
				}
				heal, err := pause(d, g)
				if err != nil {
					return nil, err
				}
				return func(ctx context.Context) error {
					after, err := reaped(ctx, other.URL())
					if err != nil {
						return err
					}
					d.Facts["reaped"] = float64(after - before)
					return heal(ctx)
				}, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				n := d.Facts["reaped"]
				return []Invariant{{"the paused gateway's group was reaped by the other", n >= 1,
					fmt.Sprintf("%.0f groups reaped by %s while %s was paused (GROUP_TTL %s)", n, d.Cluster.Gateways[1].Name, d.Cluster.Gateways[0].Name, groupTTL)}}
			},
		},
		{
			Name: "redis-pause",
			Doc: "SIGSTOP redis-server past the clients' timeouts, then SIGCONT: the relay's and the gateways' calls time out and are retried (a publish that timed out may still run after the resume, and is reconciled); " +
				"writes keep returning 201, the backlog waits in the outbox and drains.",
			Skip: func(c *cluster.Cluster) string { return c.CannotInject("redis-pause") },
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				if err := d.Cluster.PauseRedis(); err != nil {
					return nil, err
				}
				d.Logf("redis-pause: redis-server stopped (SIGSTOP)")
				return func(context.Context) error { return d.Cluster.ResumeRedis() }, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				return append(backlogGrew(d, r), stalled(r, 3*time.Second, "the 3 s Redis read timeout"))
			},
		},
	}
}

// pause stops p (SIGSTOP) and returns what resumes it.
func pause(d *Drill, p *cluster.Process) (func(context.Context) error, error) {
	pid := p.Pid()
	if err := p.Pause(); err != nil {
		return nil, err
	}
	d.Logf("%s (pid %d) stopped (SIGSTOP)", p.Name, pid)
	return func(context.Context) error { return p.Resume() }, nil
}

// stalled: deliveries stopped for at least bound during the fault, so the
// pause really outlasted it (and did not, say, hit a process that was not
// in the event path).
func stalled(r *Result, bound time.Duration, what string) Invariant {
	var longest, run float64
	prev := r.FaultStart
	for _, p := range r.Timeline {
		if p.T <= r.FaultStart || p.T > r.FaultEnd+1 {
			continue
		}
		if p.Delivered == 0 {
			run += p.T - prev
			longest = max(longest, run)
		} else {
			run = 0
		}
		prev = p.T
	}
	return Invariant{fmt.Sprintf("the pause outlasted %s", what), longest >= bound.Seconds(),
		fmt.Sprintf("no event delivered for %.2fs during the fault (bound %s)", longest, bound)}
}

// reaped reads a gateway's count of dead gateways' groups it destroyed
// (pixelflow_gateway_reaped_total on its /metrics: its /api/health is the
// api's, proxied).
func reaped(ctx context.Context, base string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("gateway metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "pixelflow_gateway_reaped_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("gateway metrics: reaped %q: %w", v, err)
			}
			return int64(n), nil
		}
	}
	return 0, fmt.Errorf("gateway metrics at %s without pixelflow_gateway_reaped_total (%v)", base, sc.Err())
}

// RedisTailLoss is Redis losing its newest second of entries while the
// relay is alive and has marked them.
func RedisTailLoss() Scenario {
	return Scenario{
		Name: "redis-tail-loss",
		Doc: "Redis loses its newest writes, as a crash inside an appendfsync everysec window does: SIGKILL redis-server, cut its append-only file back by at least one second of stream entries (at a command boundary), restart it. " +
			"The relay finds the stream shorter than what it published and must republish those entries at their numbers or start a new epoch (clients resync); never reuse a number. Nothing lost, clients converge, writes keep returning 201.",
		Skip: func(c *cluster.Cluster) string { return c.CannotInject("redis-tail-loss") },
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			want := d.Profile.WriteRate // about one second of entries
			cut, err := d.Cluster.LoseRedisTail(ctx, want)
			if err != nil {
				return nil, err
			}
			d.Logf("redis-tail-loss: %s", cut)
			d.Facts["cut"], d.Facts["want"] = float64(cut.Matched), float64(want)
			return func(context.Context) error { return nil }, nil
		},
		Check: func(d *Drill, r *Result) []Invariant {
			var resyncs int64
			for _, c := range d.Watchers.Clients {
				resyncs += c.Stats().Resyncs
			}
			return []Invariant{{"Redis lost its newest entries", d.Facts["cut"] >= d.Facts["want"],
				fmt.Sprintf("%.0f stream entries cut from the AOF (asked ≥ %.0f); clients resynced %d times", d.Facts["cut"], d.Facts["want"], resyncs)}}
		},
	}
}

// RelayCrashTailLoss is the double fault of issue 12 item 1: the relay
// dies between its XADD and its mark (a failpoint crash), the clients have
// the entries, Redis loses them, and the relay's process is restarted at
// once, as a supervisor does, while the dead relay's lease still holds:
// writes pile up in the outbox until it lapses. A relay that then hands the
// lost numbers to other events in the same epoch loses those events:
// gateways and clients drop them as duplicates of what they already have.
//
// extra are more failpoints (failpoint syntax, e.g. a switch that turns a
// fix off), armed in every pixelflow process from the start: a test that
// proves the drill has teeth runs it with the fix switched off and expects
// it to fail.
func RelayCrashTailLoss(extra ...string) Scenario {
	sc := Scenario{
		Name: "relay-crash-tail-loss",
		Doc: "The relay dies between XADD and marking (failpoint relay:after-xadd=crash, in the process that runs it: the api on the embedded file store), the clients receive that batch, " +
			"then Redis loses it (SIGKILL, AOF cut back to before the batch), then the process is restarted at once and takes writes while the dead relay's lease (LEASE_TTL 5s here) runs out. " +
			"The relay must never give the lost numbers to other events in the same epoch: nothing lost, clients converge.",
		// A file store, so the restarted api keeps its data; a short
		// retention keeps its size (and its latency) steady, as in
		// api-crash. A lease long enough that the restarted process serves
		// writes for seconds before its relay may claim: those writes and
		// the unmarked batch are then claimed together.
		// No canaries: a canary (version 0) in the lost batch or claimed
		// first after the restart would take the reused numbers instead of
		// a pixel, and the drill would prove nothing.
		Cluster:       cluster.Options{Durable: true, Env: []string{"RETENTION=2s", "LEASE_TTL=5s", "CANARY_INTERVAL=0", "CANARY_BOUND=0"}},
		WritesMayFail: true,
		Skip:          func(c *cluster.Cluster) string { return c.CannotInject("redis-tail-loss") },
		Inject:        relayCrashThenTailLoss,
		Check: func(d *Drill, r *Result) []Invariant {
			return []Invariant{
				{"the relay died between XADD and mark", d.Facts["crashed"] == 1, fmt.Sprintf("the relay's process died at the failpoint %.2fs after it was armed and was serving again %.2fs after its death", d.Facts["crashAfter"], d.Facts["restartAfter"])},
				{"every client had the batch before Redis lost it", d.Facts["clientsHad"] == 1,
					fmt.Sprintf("stream tail %.0f at the crash; every client at or past it: %v", d.Facts["tail"], d.Facts["clientsHad"] == 1)},
				{"new pixels waited in the outbox with the unmarked batch", d.Facts["waited"] == 1 && d.Facts["freshWhileWaiting"] == 1 && d.Facts["fresh"] == freshPixels,
					fmt.Sprintf("%.0f of %d fresh pixels acknowledged while the restarted relay was standby behind the dead one's lease: %v", d.Facts["fresh"], freshPixels, d.Facts["freshWhileWaiting"] == 1)},
				{"Redis lost the unmarked batch", d.Facts["cut"] >= 1 && d.Facts["tailAfter"] < d.Facts["tail"],
					fmt.Sprintf("%.0f stream entries cut; tail %.0f → %.0f", d.Facts["cut"], d.Facts["tail"], d.Facts["tailAfter"])},
			}
		},
	}
	if len(extra) > 0 {
		sc.Cluster.Env = append(sc.Cluster.Env, "PIXELFLOW_FAILPOINTS="+strings.Join(extra, ";"))
	}
	return sc
}

func relayCrashThenTailLoss(ctx context.Context, d *Drill) (func(context.Context) error, error) {
	c := d.Cluster
	armed := time.Now()
	target, crashed, err := crashRelayAtXADD(ctx, d)
	switch {
	case err != nil:
		return nil, err
	case !crashed:
		return nil, fmt.Errorf("%s did not crash at relay:after-xadd within 10s of arming it", target.Name)
	}
	died := time.Now()
	d.Facts["crashed"], d.Facts["crashAfter"] = 1, died.Sub(armed).Seconds()
	d.Logf("relay-crash-tail-loss: %s died at relay:after-xadd", target.Name)

	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(c.RedisURL, "redis://")})
	defer rdb.Close()
	st := stream.New(rdb, canvasName, 0)
	tail, err := st.Tail(ctx)
	if err != nil {
		return nil, err
	}
	d.Facts["tail"] = float64(tail.Seq)
	// The drill means something only if the clients saw the batch that
	// Redis is about to lose.
	if clientsAt(ctx, d, tail, 5*time.Second) {
		d.Facts["clientsHad"] = 1
	}
	cut, err := c.LoseRedisTail(ctx, 1)
	if err != nil {
		return nil, err
	}
	d.Facts["cut"] = float64(cut.Matched)
	after, err := st.Tail(ctx)
	if err != nil {
		return nil, err
	}
	d.Facts["tailAfter"] = float64(after.Seq)
	d.Logf("relay-crash-tail-loss: %s; stream tail %s → %s", cut, tail, after)
	// Restart at once: the dead relay's lease still holds, so the new
	// process serves writes before its relay may claim them.
	if err := target.Start(ctx); err != nil {
		return nil, err
	}
	d.Facts["restartAfter"] = time.Since(died).Seconds()
	// New pixels are painted while the restarted relay waits for the
	// lease: fresh pixels (version 1), which a claim ordered by version
	// puts first, onto the numbers the lost batch had.
	state, err := settledRelayState(ctx, target.URL())
	if err != nil {
		return nil, err
	}
	if state == "standby" {
		d.Facts["waited"] = 1
	}
	for i := range freshPixels {
		if d.Writer.Place(ctx, region+i, region).Outcome == history.OK {
			d.Facts["fresh"]++
		}
	}
	if state, err = relayState(ctx, target.URL()); err == nil && state == "standby" {
		d.Facts["freshWhileWaiting"] = 1
	}
	d.Logf("relay-crash-tail-loss: %s serving again %.2fs after its death, relay %s; %.0f fresh pixels acknowledged", target.Name, d.Facts["restartAfter"], state, d.Facts["fresh"])
	return func(context.Context) error { return nil }, nil
}

// freshPixels is how many new pixels relay-crash-tail-loss paints while
// the restarted relay waits: more than a batch at the paced rate holds.
const freshPixels = 16

// settledRelayState waits until a freshly started relay has tried the
// lease once (leader or standby) and returns its state.
func settledRelayState(ctx context.Context, base string) (string, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := relayState(ctx, base)
		if err == nil && (st == "leader" || st == "standby") {
			return st, nil
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("relay at %s not leader nor standby within 5s (state %q, %v)", base, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// canvasName is the canvas e2e clusters serve (CANVAS_NAME's default).
const canvasName = "main"

// clientsAt waits until every client holds everything up to pos.
func clientsAt(ctx context.Context, d *Drill, pos canvas.Position, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for {
		all := true
		for _, cl := range d.Watchers.Clients {
			if p := cl.Position(); p.Epoch != pos.Epoch || p.Seq < pos.Seq {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
