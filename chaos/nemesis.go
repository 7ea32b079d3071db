package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/redisaof"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// The nemesis (issue 14): instead of one scripted fault, a seeded random
// schedule over a catalogue of composable faults, overlapping, with
// traffic throughout and a heal-and-drain phase at the end; the history
// checker judges the whole run. A failing schedule is written out, can be
// replayed exactly, and is shrunk to a smallest one that still fails.

// BendWrites is the invariant a fault may bend while it is active: writes
// may fail or time out (the write path is down). Every other invariant
// (nothing lost, nothing unexpected, no gap without a resync, convergence
// after the heal) never bends.
const BendWrites = "writes keep returning 201"

// Fault is one composable fault of the catalogue.
type Fault struct {
	// Name identifies it in schedules ("pause:gateway-1").
	Name string `json:"name"`
	// Target is what it acts on: two faults on one target never overlap.
	Target string `json:"target"`
	// Bends lists the invariants that may bend while it is active.
	Bends []string `json:"bends,omitempty"`
	// Doc says in a sentence what it does.
	Doc string `json:"doc"`
	// MinHold and MaxHold bound how long the generator holds it.
	MinHold, MaxHold time.Duration `json:"-"`
	// Settle is how long its heal takes (a failover's rejoin, 15 s and
	// more): the generator counts it active (its target taken, one of the
	// maxConcurrent) that much longer, so what it plans next on the
	// target starts when planned instead of queueing behind the heal.
	Settle time.Duration `json:"-"`
	// Inject breaks something and returns what heals it.
	Inject func(ctx context.Context, d *Drill) (heal func(context.Context) error, err error) `json:"-"`
	// InjectFor, when set, is used instead of Inject: a fault that must
	// know how long the schedule holds it (a hold stalls its failpoint
	// that long).
	InjectFor func(ctx context.Context, d *Drill, hold time.Duration) (heal func(context.Context) error, err error) `json:"-"`
}

// inject starts f for a planned hold.
func (f Fault) inject(ctx context.Context, d *Drill, hold time.Duration) (func(context.Context) error, error) {
	if f.InjectFor != nil {
		return f.InjectFor(ctx, d, hold)
	}
	return f.Inject(ctx, d)
}

// Catalogue lists every fault a cluster of this shape can take, in a
// fixed order (the generator draws from it by index, so the order is part
// of what a seed means).
//
// On a Sentinel-replicated Redis (sh.Redis) the one node's faults (kill,
// amnesia, its link) give way to the failover faults (failover.go).
//
// Faults that arm failpoints (relay-crash and the holds) share each
// process's failpoint file through one failpointFiles per catalogue: a
// hold and the relay crash may act on one process at once.
func Catalogue(sh cluster.Shape) []Fault {
	var out []Fault
	files := &failpointFiles{rules: map[string]map[string]string{}}
	proc := func(name string, bends []string, what string) {
		out = append(out,
			Fault{Name: "kill:" + name, Target: name, Bends: bends, MinHold: 500 * time.Millisecond, MaxHold: 4 * time.Second,
				Doc: "SIGKILL " + what + ", restarted when healed",
				Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
					p, err := process(d, name)
					if err != nil {
						return nil, err
					}
					p.Kill()
					return p.StartLive, nil
				}},
			Fault{Name: "pause:" + name, Target: name, Bends: bends, MinHold: 500 * time.Millisecond, MaxHold: 6 * time.Second,
				Doc: "SIGSTOP " + what + ", SIGCONT when healed",
				Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
					p, err := process(d, name)
					if err != nil {
						return nil, err
					}
					if err := p.Pause(); err != nil {
						return nil, err
					}
					return func(context.Context) error { return p.Resume() }, nil
				}},
		)
	}
	writes := []string{BendWrites}
	apiWhat := "the api process"
	if len(sh.Relays) == 0 {
		apiWhat += " (embedded store and relay)"
	}
	proc(sh.API, writes, apiWhat)
	relayTarget, relayBends := sh.API, writes
	if len(sh.Relays) > 0 {
		relayTarget, relayBends = "relays", nil
		for _, r := range sh.Relays {
			proc(r, nil, "relay process "+r)
		}
	}
	out = append(out, Fault{Name: "relay-crash", Target: relayTarget, Bends: relayBends, MinHold: 300 * time.Millisecond, MaxHold: 3 * time.Second,
		Doc: "the leading relay's process dies right after its next XADD, before marking (failpoint relay:after-xadd=crash); restarted when healed",
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			p, err := crashRelay(ctx, d, files)
			if err != nil {
				return nil, err
			}
			// Restart it if it died (the crash can land after the wait
			// gave up, as the file is being disarmed).
			return func(ctx context.Context) error {
				if p.Pid() != 0 {
					return nil
				}
				return p.StartLive(ctx)
			}, nil
		}})
	for _, g := range sh.Gateways {
		proc(g, nil, "gateway "+g)
	}
	redisFault := func(name, doc string, inject func(ctx context.Context, d *Drill) (func(context.Context) error, error)) {
		out = append(out, Fault{Name: name, Target: "redis", MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second, Doc: doc, Inject: inject})
	}
	// One node's faults, and its link's: a replicated Redis has neither
	// the one redis-server KillRedis and the rest act on nor a proxy in
	// front of it (its faults are its topology's, appended last).
	single := sh.Redis == ""
	if single {
		redisFault("kill:redis", "SIGKILL redis-server (AOF on), restarted with its data when healed", func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			if err := d.Cluster.KillRedis(ctx); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { return d.Cluster.RestartRedis(ctx, false) }, nil
		})
		redisFault("redis-amnesia", "SIGKILL redis-server, restarted empty when healed", func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			if err := d.Cluster.KillRedis(ctx); err != nil {
				return nil, err
			}
			return func(ctx context.Context) error { return d.Cluster.RestartRedis(ctx, true) }, nil
		})
	}
	if sh.LocalRedis {
		redisFault("pause:redis", "SIGSTOP redis-server, SIGCONT when healed", func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			if err := d.Cluster.PauseRedis(); err != nil {
				return nil, err
			}
			return func(context.Context) error { return d.Cluster.ResumeRedis() }, nil
		})
		redisFault("redis-lose-last-append", "redis-server crashes and its newest append (the last unit with stream entries, and every write after it) never reached the disk; restarted at once",
			func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return loseTail(ctx, d, "redis-lose-last-append", 1)
			})
		// Its own target, so it overlaps the faults of the redis process:
		// with the disk slow Redis postpones its AOF writes (up to 2 s), and
		// a SIGKILL meanwhile loses writes it already answered, a tail loss
		// without a machine crash. A restart ends it (the new process's
		// disk is fast).
		out = append(out, Fault{Name: "slow-disk:redis", Target: "redis-disk", MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second,
			Doc: fmt.Sprintf("every fsync of redis-server takes %s longer (strace), until healed or Redis restarts", slowFsync),
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				heal, err := d.Cluster.SlowRedisDisk(ctx, slowFsync)
				if errors.Is(err, cluster.ErrRedisDown) {
					d.Logf("slow-disk:redis: %v; nothing to slow", err)
					return func(context.Context) error { return nil }, nil
				}
				if err != nil {
					return nil, err
				}
				return func(context.Context) error { return heal() }, nil
			}})
		redisFault("redis-tail-loss", "redis-server crashes inside an appendfsync everysec window: its newest second of stream entries (and every write after them) are lost; restarted at once",
			func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return loseTail(ctx, d, "redis-tail-loss", d.Profile.WriteRate)
			})
	}
	link := func(name string, proxy func(*cluster.Cluster) *cluster.Proxy, bends []string) {
		target := name + "-link"
		toxic := func(kind, doc string, attrs map[string]any) {
			out = append(out, Fault{Name: kind + ":" + target, Target: target, Bends: bends, MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second, Doc: doc,
				Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
					lift, err := proxy(d.Cluster).Toxic(kind, attrs)
					if err != nil {
						return nil, err
					}
					return func(context.Context) error { return lift() }, nil
				}})
		}
		out = append(out, Fault{Name: "cut:" + target, Target: target, Bends: bends, MinHold: 500 * time.Millisecond, MaxHold: 5 * time.Second,
			Doc: "toxiproxy closes every connection of the " + name + " link and refuses new ones, restored when healed",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				p := proxy(d.Cluster)
				if err := p.Cut(); err != nil {
					return nil, err
				}
				return func(context.Context) error { return p.Restore() }, nil
			}})
		toxic("latency", "200 ± 50 ms on the "+name+" link", map[string]any{"latency": 200, "jitter": 50})
		toxic("reset_peer", "connections of the "+name+" link reset after 500 ms", map[string]any{"timeout": 500})
		toxic("slicer", "the "+name+" link's data sliced into tiny delayed packets", map[string]any{"average_size": 16, "size_variation": 8, "delay": 2000})
	}
	if single {
		link("redis", func(c *cluster.Cluster) *cluster.Proxy { return c.RedisProxy }, nil)
	}
	if sh.Mongo {
		link("mongo", func(c *cluster.Cluster) *cluster.Proxy { return c.MongoProxy }, writes)
	}
	out = append(out,
		Fault{Name: "slow-client", Target: "client-00", MinHold: 500 * time.Millisecond, MaxHold: 6 * time.Second,
			Doc: "client-00 (4 KiB receive buffer) stops reading, reads again when healed",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				cl := d.Watchers.Clients[0]
				cl.Pause(true)
				return func(context.Context) error { cl.Pause(false); return nil }, nil
			}},
		Fault{Name: "reconnect-storm", Target: "clients", MinHold: 500 * time.Millisecond, MaxHold: 4 * time.Second,
			Doc: "every client but client-00 drops its connection without a close handshake every 100 ms and resumes",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				return storm(ctx, d.Watchers.Clients[1:]), nil
			}},
	)
	// The holds come last: a seed chosen before they existed draws the
	// same schedule from withoutHolds(Catalogue(sh)).
	relays := sh.Relays
	if len(relays) == 0 {
		relays = []string{sh.API} // the embedded store's relay runs in the api
	}
	for _, r := range relays {
		out = append(out,
			holdFault(files, r, "claim-xadd", "relay:before-xadd", r+"'s relay", "between recording a claim's numbers in the store and appending them (XADD; also a repair's or a new epoch's republish)"),
			holdFault(files, r, "xadd-mark", "relay:before-mark", r+"'s relay", "between its XADD and marking those events published"))
	}
	for _, g := range sh.Gateways {
		out = append(out,
			holdFault(files, g, "group-create", "gateway:before-group-create", g, "between reading the epoch and creating its group, as it (re)joins the stream"),
			holdFault(files, g, "reap", "gateway:reap-before-destroy", g+"'s reaper", "between reading heartbeats and groups and destroying the dead instances' (its own heartbeats wait too)"))
	}
	// Container faults after everything: only the docker provider has
	// them, and a seed's draws from the rest keep their meaning.
	if sh.Containers {
		out = append(out, containerFaults(sh)...)
	}
	// The failover faults last of all, for the same reason.
	if sh.Redis == redisurl.Sentinel {
		out = append(out, failoverFaults()...)
	}
	return out
}

// holdFault is hold:<proc>:<window>, an interleaving fault (issue 28 item
// 4): the races it exposes need two things within one Redis round trip,
// which faults from outside a process (kill, pause, a cut link) hit by
// chance alone. While it is on, every pass of proc through the window's
// failpoint sleeps for the fault's hold (fp=sleep(hold)), so whatever
// other fault runs meanwhile (a reap, an epoch start, a crash, Redis
// losing its tail) lands inside the window. The heal disarms it; a pass
// already held finishes its sleep. Its target is its own ("hold:<proc>"),
// so it overlaps faults of proc itself: a pause that gets a gateway
// reaped, a kill inside the window. It bends nothing: a held relay or
// gateway delays deliveries, never a write.
func holdFault(files *failpointFiles, proc, window, fp, who, where string) Fault {
	name := "hold:" + proc + ":" + window
	return Fault{Name: name, Target: "hold:" + proc, MinHold: 500 * time.Millisecond, MaxHold: 4 * time.Second,
		Doc: fmt.Sprintf("%s is held %s: each pass sleeps for the hold (failpoint %s=sleep), disarmed when healed", who, where, fp),
		InjectFor: func(ctx context.Context, d *Drill, hold time.Duration) (func(context.Context) error, error) {
			p, err := process(d, proc)
			if err != nil {
				return nil, err
			}
			if err := files.set(p, name, holdRule(fp, hold)); err != nil {
				return nil, err
			}
			return func(context.Context) error { return files.set(p, name, "") }, nil
		}}
}

// holdRule is the failpoint rule that holds each pass through fp for hold
// (at least 10 ms: a schedule may plan a zero hold, and sleep takes only a
// positive duration).
func holdRule(fp string, hold time.Duration) string {
	return fmt.Sprintf("%s=sleep(%s)", fp, max(hold, 10*time.Millisecond).Round(time.Millisecond))
}

// withoutHolds is cat without the hold faults: the catalogue as it was
// before they were added, for seeds chosen then.
func withoutHolds(cat []Fault) []Fault {
	return slices.DeleteFunc(slices.Clone(cat), func(f Fault) bool { return strings.HasPrefix(f.Name, "hold:") })
}

// failpointFiles composes what faults arm in each process's failpoint
// file. cluster.Process.Arm replaces the whole file, so two faults arming
// one process (relay-crash and a hold on the api) would otherwise disarm
// each other.
type failpointFiles struct {
	mu    sync.Mutex
	rules map[string]map[string]string // process → fault → rule
}

// set arms rule for fault in p ("" disarms it) and rewrites p's file with
// every fault's rule.
func (f *failpointFiles) set(p *cluster.Process, fault, rule string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.rules[p.Name]
	if m == nil {
		m = map[string]string{}
		f.rules[p.Name] = m
	}
	if rule == "" {
		delete(m, fault)
	} else {
		m[fault] = rule
	}
	faults := slices.Sorted(maps.Keys(m))
	spec := make([]string, len(faults))
	for i, k := range faults {
		spec[i] = m[k]
	}
	if err := p.Arm(strings.Join(spec, ";")); err != nil {
		return fmt.Errorf("%s: %w", fault, err)
	}
	return nil
}

// process finds a pixelflow process of the drill's cluster by name.
func process(d *Drill, name string) (*cluster.Process, error) {
	if p := d.Cluster.Process(name); p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("no process %q in this cluster", name)
}

// loseTail cuts the newest entries from Redis's AOF and restarts it. A
// file holding fewer entries than asked (Redis came back empty a moment
// ago) loses nothing: the crash still happened, the fault is no error.
func loseTail(ctx context.Context, d *Drill, name string, entries int) (func(context.Context) error, error) {
	cut, err := d.Cluster.LoseRedisTail(ctx, entries)
	switch {
	case errors.Is(err, redisaof.ErrShort):
		d.Logf("%s: nothing to cut (%v); redis-server restarted", name, err)
	case err != nil:
		return nil, err
	default:
		d.Logf("%s: %s", name, cut)
	}
	return func(context.Context) error { return nil }, nil
}

// crashRelay crashes the leading relay at relay:after-xadd. When no XADD
// comes within 10 s (Redis down, or the relay waiting for a lease), the
// fault did not fire: that is logged, not an error.
func crashRelay(ctx context.Context, d *Drill, files *failpointFiles) (*cluster.Process, error) {
	target, crashed, err := crashRelayArmed(ctx, d, func(p *cluster.Process, spec string) error {
		return files.set(p, "relay-crash", spec)
	})
	if err == nil && !crashed {
		d.Logf("relay-crash: %s reached no XADD within 10s; nothing crashed", target.Name)
	}
	return target, err
}

// crashRelayAtXADD arms relay:after-xadd=crash in the process running the
// leading relay, waits up to 10 s for it to die there and disarms it (the
// failpoint file outlives the process, so a restart does not crash again).
// crashed says whether it died.
func crashRelayAtXADD(ctx context.Context, d *Drill) (target *cluster.Process, crashed bool, err error) {
	return crashRelayArmed(ctx, d, (*cluster.Process).Arm)
}

// crashRelayArmed is crashRelayAtXADD arming through arm (the nemesis's
// composes the rule with the holds armed in that process).
func crashRelayArmed(ctx context.Context, d *Drill, arm func(p *cluster.Process, spec string) error) (target *cluster.Process, crashed bool, err error) {
	c := d.Cluster
	target = c.API
	if len(c.Relays) > 0 {
		if target, err = activeRelay(ctx, c); err != nil {
			return nil, false, err
		}
	}
	exited := target.Exited()
	if err := arm(target, "relay:after-xadd=crash"); err != nil {
		return target, false, err
	}
	select {
	case <-exited:
		crashed = true
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	if err := arm(target, ""); err != nil {
		return target, crashed, err
	}
	return target, crashed, ctx.Err()
}

// storm drops clients every 100 ms until the returned heal is called.
func storm(ctx context.Context, clients []*client.Client) func(context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			for _, cl := range clients {
				cl.Drop()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func(context.Context) error { cancel(); <-done; return nil }
}

// Schedule is a nemesis run's faults, in seconds after the fault phase
// began. It is what schedule.json holds, and what replay runs.
type Schedule struct {
	// Seed generated it (0 for a hand-written or shrunk schedule's origin
	// unknown).
	Seed uint64 `json:"seed"`
	// Duration is the fault phase's length in seconds; traffic runs
	// before, during and after it.
	Duration float64 `json:"duration"`
	// MaxConcurrent is the most faults active at once.
	MaxConcurrent int `json:"maxConcurrent"`
	// Redis is the replicated Redis it was drawn for ("" one node,
	// redisurl.Sentinel): its catalogue differs, so a replay or a shrink
	// candidate runs on the same deployment.
	Redis redisurl.Mode `json:"redis,omitempty"`
	// Failpoints are armed in every process from the start (failpoint
	// syntax): a test-only switch re-creating a bug, for teeth tests.
	Failpoints []string  `json:"failpoints,omitempty"`
	Faults     []Planned `json:"faults"`
}

// Planned is one fault of a schedule.
type Planned struct {
	Fault string  `json:"fault"`
	At    float64 `json:"at"`   // seconds after the fault phase began
	Hold  float64 `json:"hold"` // seconds held before the heal
}

// End is when the planned fault heals.
func (p Planned) End() float64 { return p.At + p.Hold }

// Generate draws a schedule over cat from seed: faults one after another
// with random gaps, each held a random time within its bounds, overlapping
// up to maxConcurrent at once (a fault counts until its heal settles),
// never two on one target. The same seed,
// duration, bound and catalogue give the same schedule.
func Generate(seed uint64, duration time.Duration, maxConcurrent int, cat []Fault) Schedule {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	s := Schedule{Seed: seed, Duration: duration.Seconds(), MaxConcurrent: maxConcurrent}
	end := duration.Seconds()
	type active struct {
		target string
		end    float64
	}
	var act []active
	t := 0.5 + rng.Float64()
	for t < end-0.5 {
		t = round(t)
		act = slices.DeleteFunc(act, func(a active) bool { return a.end <= t+eps })
		if len(act) >= maxConcurrent {
			next := act[0].end
			for _, a := range act {
				next = min(next, a.end)
			}
			t = next
			continue
		}
		var free []Fault
		for _, f := range cat {
			if !slices.ContainsFunc(act, func(a active) bool { return a.target == f.Target }) {
				free = append(free, f)
			}
		}
		if len(free) > 0 {
			f := free[rng.IntN(len(free))]
			hold := f.MinHold.Seconds() + rng.Float64()*(f.MaxHold-f.MinHold).Seconds()
			hold = min(hold, end-t)
			p := Planned{Fault: f.Name, At: round(t), Hold: round(hold)}
			s.Faults = append(s.Faults, p)
			busy := p.End()
			if f.Settle > 0 { // untouched otherwise: the older seeds' draws stay exact
				busy = round(busy + f.Settle.Seconds())
			}
			act = append(act, active{f.Target, busy})
		}
		t += 0.3 + rng.Float64()*2.2
	}
	return s
}

func round(x float64) float64 { return float64(int64(x*100+0.5)) / 100 }

// eps absorbs float rounding in schedule times (they have 10 ms steps).
const eps = 1e-6

// Validate checks s against a catalogue: every fault known, none before 0
// or past the duration, no two on one target at once, at most
// MaxConcurrent at any time.
func (s Schedule) Validate(cat []Fault) error {
	byName := map[string]Fault{}
	for _, f := range cat {
		byName[f.Name] = f
	}
	if s.Duration <= 0 {
		return errors.New("schedule: duration must be positive")
	}
	for i, p := range s.Faults {
		f, ok := byName[p.Fault]
		if !ok {
			return fmt.Errorf("schedule: fault %d %q is not in this cluster's catalogue", i, p.Fault)
		}
		if p.At < 0 || p.Hold < 0 || p.End() > s.Duration+1e-9 {
			return fmt.Errorf("schedule: fault %d %s at %.2fs held %.2fs is outside 0..%.2fs", i, p.Fault, p.At, p.Hold, s.Duration)
		}
		n := 0
		for j, q := range s.Faults {
			if p.At >= q.At-eps && p.At < q.End()-eps {
				n++
				if j != i && byName[q.Fault].Target == f.Target {
					return fmt.Errorf("schedule: %s and %s act on %s at once", p.Fault, q.Fault, f.Target)
				}
			}
		}
		if s.MaxConcurrent > 0 && n > s.MaxConcurrent {
			return fmt.Errorf("schedule: %d faults at once at %.2fs, more than %d", n, p.At, s.MaxConcurrent)
		}
	}
	return nil
}

// ReadSchedule reads a schedule.json.
func ReadSchedule(path string) (Schedule, error) {
	var s Schedule
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("read schedule: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("schedule %s: %w", path, err)
	}
	return s, nil
}

// Write saves s as indented JSON.
func (s Schedule) Write(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// String lists the faults, one a line.
func (s Schedule) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %.1fs, at most %d at once, %d faults", s.Seed, s.Duration, s.MaxConcurrent, len(s.Faults))
	if s.Redis != "" {
		fmt.Fprintf(&b, ", Redis %s", s.Redis)
	}
	if len(s.Failpoints) > 0 {
		fmt.Fprintf(&b, ", failpoints %s", strings.Join(s.Failpoints, ";"))
	}
	for _, p := range s.Faults {
		fmt.Fprintf(&b, "\n  %6.2fs–%6.2fs  %s", p.At, p.End(), p.Fault)
	}
	return b.String()
}

// Window is one fault as it ran, on the drill's timeline (seconds since
// traffic started).
type Window struct {
	Fault   string   `json:"fault"`
	Planned float64  `json:"planned"` // planned start
	Start   float64  `json:"start"`   // inject began
	Healed  float64  `json:"healed"`  // heal began
	End     float64  `json:"end"`     // heal done
	Bends   []string `json:"bends,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// nemesisEnv is the cluster every nemesis run uses: the file store (so the
// api can be killed), a short retention (steady store size), a 5 s lease
// (a restarted relay waits behind a dead one's lease while writes come
// in), a 2 s group TTL (a paused gateway is reaped), no canaries (a canary
// claimed first would take a reused sequence number and hide a pixel's
// loss: the drills judge pixels).
var nemesisEnv = []string{"RETENTION=2s", "LEASE_TTL=5s", "GROUP_TTL=2s", "CANARY_INTERVAL=0", "CANARY_BOUND=0"}

// NemesisScenario runs schedule s as one drill: the fault phase lasts
// s.Duration, every fault injected and healed at its time, traffic
// throughout (paced region writes and a tenth as many fresh pixels).
// Beyond the invariants every drill is held to, it checks that each
// fault was injected and healed and that every write that did not succeed
// overlapped a fault allowed to bend writes.
func NemesisScenario(s Schedule) Scenario {
	env := slices.Clone(nemesisEnv)
	if len(s.Failpoints) > 0 {
		env = append(env, "PIXELFLOW_FAILPOINTS="+strings.Join(s.Failpoints, ";"))
	}
	return Scenario{
		Name:          "nemesis",
		Doc:           "A generated schedule of overlapping faults (" + s.summary() + "), traffic throughout, then heal and drain; the history checker judges the whole run.",
		Cluster:       cluster.Options{Durable: true, Env: env, Redis: s.Redis},
		WritesMayFail: true, // judged per write below
		FreshRate:     10,
		Converge:      20 * time.Second,
		// Judged on correctness and liveness: the last faults' recovery
		// (a new epoch, a client reconnecting with backoff) legitimately
		// runs into the after phase, so the latency band and the drain
		// rate, which the single-fault drills check, are not criteria here.
		CorrectnessOnly: true,
		Watch: []cluster.WatchOption{func(i int, o *client.Options) {
			if i == 0 {
				o.Dialer = smallBufferDialer()
			}
		}},
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			cat := Catalogue(d.Cluster.Shape)
			if err := s.Validate(cat); err != nil {
				return nil, err
			}
			d.Schedule = &s
			return runSchedule(ctx, d, s, cat), nil
		},
		Check: nemesisChecks,
	}
}

func (s Schedule) summary() string {
	names := map[string]int{}
	for _, p := range s.Faults {
		names[p.Fault]++
	}
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if names[k] > 1 {
			keys[i] = fmt.Sprintf("%s ×%d", k, names[k])
		}
	}
	on := ""
	if s.Redis != "" {
		on = " on Redis " + string(s.Redis)
	}
	return fmt.Sprintf("seed %d, %d faults over %.0fs%s: %s", s.Seed, len(s.Faults), s.Duration, on, strings.Join(keys, ", "))
}

// runSchedule starts every fault at its time and returns what waits for
// the last heal. Faults on one target run one after another: a fault
// planned to start as the previous one on its target ends waits for that
// heal to finish (a restart takes a moment), so two never act on one
// target at once. Windows are recorded in d.Windows.
func runSchedule(ctx context.Context, d *Drill, s Schedule, cat []Fault) func(context.Context) error {
	byName := map[string]Fault{}
	for _, f := range cat {
		byName[f.Name] = f
	}
	plans := slices.Clone(s.Faults)
	sort.SliceStable(plans, func(i, j int) bool { return plans[i].At < plans[j].At })
	byTarget := map[string][]Planned{}
	var targets []string
	for _, p := range plans {
		t := byName[p.Fault].Target
		if _, ok := byTarget[t]; !ok {
			targets = append(targets, t)
		}
		byTarget[t] = append(byTarget[t], p)
	}
	phase := time.Now()
	since := func() float64 { return time.Since(d.Start).Seconds() }
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range byTarget[t] {
				f := byName[p.Fault]
				sleep(ctx, time.Until(phase.Add(seconds(p.At))))
				w := Window{Fault: f.Name, Planned: phase.Add(seconds(p.At)).Sub(d.Start).Seconds(), Start: since(), Bends: f.Bends}
				heal, err := f.inject(ctx, d, seconds(p.Hold))
				if err == nil {
					d.Logf("nemesis: %s on at %.2fs", f.Name, w.Start)
					sleep(ctx, time.Until(phase.Add(seconds(p.End()))))
					w.Healed = since()
					err = heal(context.WithoutCancel(ctx))
				}
				w.End = since()
				if err != nil {
					w.Error, _, _ = strings.Cut(err.Error(), "\n")
					d.Logf("nemesis: %s: %v", f.Name, err)
				} else {
					d.Logf("nemesis: %s healed at %.2fs", f.Name, w.End)
				}
				mu.Lock()
				d.Windows = append(d.Windows, w)
				mu.Unlock()
			}
		}()
	}
	return func(context.Context) error {
		wg.Wait()
		sort.Slice(d.Windows, func(i, j int) bool { return d.Windows[i].Start < d.Windows[j].Start })
		return nil
	}
}

func seconds(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }

// nemesisChecks: every fault ran, and writes failed only inside windows of
// faults that may bend them.
func nemesisChecks(d *Drill, r *Result) []Invariant {
	var errs []string
	for _, w := range d.Windows {
		if w.Error != "" {
			errs = append(errs, w.Fault+": "+w.Error)
		}
	}
	out := []Invariant{{"every fault injected and healed", len(errs) == 0,
		fmt.Sprintf("%d faults, %d errors %s", len(d.Windows), len(errs), strings.Join(errs, "; "))}}
	var bending [][2]time.Time
	for _, w := range d.Windows {
		if slices.Contains(w.Bends, BendWrites) {
			bending = append(bending, [2]time.Time{d.Start.Add(seconds(w.Start)), d.Start.Add(seconds(w.End))})
		}
	}
	bad, allowed := 0, 0
	var example string
	for _, w := range d.Writer.Rec.Writes() {
		if w.Outcome == history.OK {
			continue
		}
		if slices.ContainsFunc(bending, func(b [2]time.Time) bool { return !w.End.Before(b[0]) && !w.Start.After(b[1]) }) {
			allowed++
			continue
		}
		bad++
		if example == "" {
			example = fmt.Sprintf("; e.g. (%d,%d) %s from %.2fs to %.2fs", w.GX, w.GY, w.Outcome, w.Start.Sub(d.Start).Seconds(), w.End.Sub(d.Start).Seconds())
		}
	}
	out = append(out, Invariant{"writes fail only while the write path is down", bad == 0,
		fmt.Sprintf("%d writes failed or timed out outside any fault bending writes, %d inside%s", bad, allowed, example)})
	return out
}
