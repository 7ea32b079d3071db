package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// Scenarios lists every drill in the order `make chaos` runs them.
func Scenarios() []Scenario {
	return append([]Scenario{
		{
			Name: "redis-kill",
			Doc:  "SIGKILL Redis (AOF on) under load and restart it after the fault window: writes keep returning 201, the backlog waits in the outbox and drains when Redis returns.",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				if err := d.Cluster.KillRedis(ctx); err != nil {
					return nil, err
				}
				return func(ctx context.Context) error { return d.Cluster.RestartRedis(ctx, false) }, nil
			},
			Check: backlogGrew,
		},
		{
			Name: "redis-amnesia",
			Doc:  "Redis comes back empty (its data wiped): a new epoch starts, the retained outbox is republished and clients resync; nothing is lost.",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				if err := d.Cluster.KillRedis(ctx); err != nil {
					return nil, err
				}
				return func(ctx context.Context) error { return d.Cluster.RestartRedis(ctx, true) }, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				var resyncs int64
				for _, c := range d.Watchers.Clients {
					resyncs += c.Stats().Resyncs
				}
				return []Invariant{{"clients told to resync on the new epoch", resyncs >= int64(len(d.Watchers.Clients)), fmt.Sprintf("%d resyncs over %d clients", resyncs, len(d.Watchers.Clients))}}
			},
		},
		{
			Name: "redis-partition",
			Doc:  "toxiproxy cuts the Redis link (connections closed, new ones refused), then restores it.",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				if err := d.Cluster.RedisProxy.Cut(); err != nil {
					return nil, err
				}
				return func(context.Context) error { return d.Cluster.RedisProxy.Restore() }, nil
			},
			Check: backlogGrew,
		},
		{
			Name: "redis-latency",
			Doc:  "200 ms ± 50 ms latency on the Redis link, then removed: latency degrades during the fault and returns to its baseline after.",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				lift, err := d.Cluster.RedisProxy.Latency(200*time.Millisecond, 50*time.Millisecond)
				if err != nil {
					return nil, err
				}
				return func(context.Context) error { return lift() }, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				during := r.Phases["during"].P99Ms
				return []Invariant{{"the fault was felt (P99 during ≥ 150 ms)", during >= 150, fmt.Sprintf("P99 during %.1f ms", during)}}
			},
		},
		{
			Name: "redis-flaky",
			Doc:  "The Redis link misbehaves in turn: connections reset (reset_peer), data sliced into tiny delayed packets (slicer), then a stall that ends in a close (timeout).",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				steps := []struct {
					kind  string
					attrs map[string]any
				}{
					{"reset_peer", map[string]any{"timeout": 500}},
					{"slicer", map[string]any{"average_size": 16, "size_variation": 8, "delay": 2000}},
					{"timeout", map[string]any{"timeout": 1000}},
				}
				done := make(chan error, 1)
				go func() {
					each := d.Profile.Fault / time.Duration(len(steps))
					for _, s := range steps {
						lift, err := d.Cluster.RedisProxy.Toxic(s.kind, s.attrs)
						if err != nil {
							done <- err
							return
						}
						d.Logf("redis-flaky: %s on", s.kind)
						sleep(ctx, each)
						if err := lift(); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				return func(context.Context) error { return <-done }, nil
			},
		},
		{
			Name: "relay-kill",
			Doc:  "SIGKILL the active relay mid-flight: the standby takes over within the lease; no loss, duplicates counted.",
			Skip: func(c *cluster.Cluster) string {
				if c.Topology.RelayInAPI {
					return "the embedded store lives in the api process, so its relay does too: there is no standby relay process to take over (api-crash kills that process instead; the relay's crash between XADD and marking is covered by internal/relay tests). Runs on MongoDB (docker provider or mongod on PATH)."
				}
				if n := len(c.RelayHosts()); n < 2 {
					return fmt.Sprintf("%d relay process: no standby to take over", n)
				}
				return ""
			},
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				active, err := activeRelay(ctx, d.Cluster)
				if err != nil {
					return nil, err
				}
				d.Logf("relay-kill: killing %s (pid %d)", active.Name, active.Pid())
				active.Kill()
				return func(ctx context.Context) error { return active.Start(ctx) }, nil
			},
		},
		{
			Name: "gateway-kill",
			Doc:  "SIGKILL one of two gateways: its clients resume on the other; it restarts and its consumer group's pending entries are not lost.",
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				g := d.Cluster.Gateways[0]
				before := make([]int64, len(d.Watchers.Clients))
				for i, c := range d.Watchers.Clients {
					before[i] = c.Stats().Resumes
				}
				g.Kill()
				return func(ctx context.Context) error {
					moved := 0
					for i, c := range d.Watchers.Clients {
						if i%len(d.Cluster.Gateways) == 0 && c.Stats().Resumes > before[i] {
							moved++
						}
					}
					d.Facts["moved"] = float64(moved)
					return g.Start(ctx)
				}, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				want := (len(d.Watchers.Clients) + 1) / 2
				return []Invariant{{"its clients resumed on the other gateway", int(d.Facts["moved"]) == want, fmt.Sprintf("%.0f of %d resumed during the fault", d.Facts["moved"], want)}}
			},
		},
		{
			Name: "api-crash",
			Doc:  "SIGKILL the api process (with the embedded store: the process that owns the store file and runs the relay) and restart it: acknowledged writes survive, clients converge.",
			// A short retention keeps the file store's size steady, so
			// latency after the crash compares with latency before it
			// (the embedded file store rewrites its file per commit).
			Cluster:       cluster.Options{Durable: true, Env: []string{"RETENTION=2s"}},
			WritesMayFail: true,
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				d.Cluster.API.Kill()
				return func(ctx context.Context) error { return d.Cluster.API.Start(ctx) }, nil
			},
		},
		{
			Name:    "slow-client",
			Doc:     "One client stops reading: everyone else's P99 stays within the baseline band; the slow one is degraded (backlog dropped, resync) and converges when it reads again.",
			Cluster: cluster.Options{Env: []string{"CLIENT_QUEUE=32", "CLIENT_SEND_BUFFER=8192"}},
			// Tiny socket buffers, so the paused client fills the
			// gateway's queue rather than the kernel's.
			Watch: []cluster.WatchOption{func(i int, o *client.Options) {
				if i == 0 {
					o.Dialer = smallBufferDialer()
				}
			}},
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				slow := d.Watchers.Clients[0]
				before := slow.Stats().Resyncs
				d.lat.ignore(0) // the others' latency is what must hold
				slow.Pause(true)
				return func(context.Context) error {
					slow.Pause(false)
					d.Facts["before"] = float64(before)
					return nil
				}, nil
			},
			Check: func(d *Drill, r *Result) []Invariant {
				slow := d.Watchers.Clients[0].Stats()
				return []Invariant{
					{"the slow client was degraded (resync)", float64(slow.Resyncs) > d.Facts["before"], fmt.Sprintf("%d resyncs", slow.Resyncs)},
					p99Held(r, "the other clients"),
				}
			},
		},
		{
			Name:          "mongo-partition",
			Doc:           "toxiproxy cuts the MongoDB link: the API answers 503 with a clear error and writes nothing half; it recovers after.",
			WritesMayFail: true,
			Skip: func(c *cluster.Cluster) string {
				if !c.Topology.CanPartition(cluster.LinkMongo) {
					return "the embedded store has no link to cut: runs on MongoDB (docker provider or mongod on PATH)"
				}
				return ""
			},
			Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
				if err := d.Cluster.MongoProxy.Cut(); err != nil {
					return nil, err
				}
				return func(context.Context) error { return d.Cluster.MongoProxy.Restore() }, nil
			},
		},
	}, append(append(append(pauseScenarios(), RedisTailLoss(), RelayCrashTailLoss(), RedisSlowDisk(), GatewayRejoinNewEpoch()), FailoverScenarios()...), containerScenarios()...)...)
}

// backlogGrew: with Redis unreachable the outbox must have held the writes.
func backlogGrew(d *Drill, r *Result) []Invariant {
	peak := 0
	for _, p := range r.Timeline {
		if p.T >= r.FaultStart && p.T <= r.FaultEnd {
			peak = max(peak, p.Backlog)
		}
	}
	return []Invariant{{"the backlog waited in the outbox during the fault", peak > 0, fmt.Sprintf("peak backlog %d during the fault", peak)}}
}

// activeRelay finds the process whose relay holds the lease.
func activeRelay(ctx context.Context, c *cluster.Cluster) (*cluster.Process, error) {
	for _, p := range c.RelayHosts() {
		st, err := relayState(ctx, p.URL())
		if err == nil && st == "leader" {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no relay is leader")
}

// relayState reads a relay process's state (leader, standby, …) from its
// /api/health.
func relayState(ctx context.Context, base string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct {
		Relay struct {
			State string `json:"state"`
		} `json:"relay"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", fmt.Errorf("relay health: %w", err)
	}
	return h.Relay.State, nil
}

// smallBufferDialer dials WebSockets whose receive buffer is 4 KiB.
func smallBufferDialer() *websocket.Dialer {
	nd := &net.Dialer{}
	return &websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(4096)
			}
			return c, err
		},
	}
}

// slowFsync is how much longer every fsync of Redis takes in the slow-disk
// fault: a stalled ext4 journal commit, a few times longer than the ones
// this machine's disk shows by itself (40–70 ms).
const slowFsync = 200 * time.Millisecond

// RedisSlowDisk is the slow-disk drill: every fsync redis-server makes
// waits slowFsync more while the fault lasts. Redis must not wait for its
// disk before it replies, so deliveries keep their P99.
func RedisSlowDisk() Scenario {
	return Scenario{
		Name: "redis-slow-disk",
		Doc: fmt.Sprintf("Redis's disk stalls: every fsync of its append-only file takes %s longer (strace injects the delay). "+
			"Redis fsyncs once a second in the background, so replies never wait for the disk: writes keep returning 201 and deliveries keep their P99.", slowFsync),
		Skip: func(c *cluster.Cluster) string { return c.CannotInject("redis-slow-disk") },
		Inject: func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
			heal, err := d.Cluster.SlowRedisDisk(ctx, slowFsync)
			if err != nil {
				return nil, err
			}
			return func(context.Context) error { return heal() }, nil
		},
		Check: func(d *Drill, r *Result) []Invariant { return []Invariant{p99Held(r, "every client")} },
	}
}
