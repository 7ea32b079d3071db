package redistopo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// ClusterOptions shape a Redis Cluster.
type ClusterOptions struct {
	// NodeTimeout is how long a node may be silent before the others
	// fail it (cluster-node-timeout; default 1s): a replica takes over
	// about twice that after its primary dies.
	NodeTimeout time.Duration
	// AppendOnly turns AOF on for every node (see redisproc).
	AppendOnly bool
}

// Cluster is a Redis Cluster of three primaries, each with one replica.
type Cluster struct {
	tb testing.TB
	// Nodes: Nodes[i] (i < 3) was a primary at start and Nodes[i+3] its
	// replica. Who is primary now is the cluster's answer (PrimaryFor).
	Nodes []*redisproc.Server
	// MigrateKeyGap is how long MigrateSlot waits between moving two keys
	// (0: none). A gap keeps a slot's keys split across two nodes long
	// enough for clients to meet ASK and TRYAGAIN, as in a slow
	// resharding of a large slot.
	MigrateKeyGap time.Duration
}

// The slot ranges of the three primaries.
var slotRanges = [3][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}

// StartCluster starts six cluster nodes, joins them, gives each primary a
// third of the slots and a replica, and returns once every node reports
// the cluster ok with every replica in sync.
func StartCluster(tb testing.TB, opts ClusterOptions) *Cluster {
	tb.Helper()
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	start := time.Now()
	c, err := startCluster(ctx, tb, opts)
	if err != nil {
		tb.Fatalf("redistopo: cluster: %v", err)
	}
	tb.Logf("redistopo: 3×2 cluster up in %s", time.Since(start).Round(time.Millisecond))
	return c
}

func startCluster(ctx context.Context, tb testing.TB, opts ClusterOptions) (*Cluster, error) {
	dir := tb.TempDir()
	c := &Cluster{tb: tb}
	for i := range 6 {
		n, err := node(ctx, tb, dir, "node"+strconv.Itoa(i), redisproc.Options{AppendOnly: opts.AppendOnly, Args: []string{
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
			// A replica takes over however long its link was down: the
			// harness decides what is lost (PauseReplication), not age.
			"--cluster-replica-validity-factor", "0",
		}})
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	first := c.Nodes[0]
	for _, n := range c.Nodes[1:] {
		if err := do(ctx, n.Addr(), "CLUSTER", "MEET", "127.0.0.1", port(first)).Err(); err != nil {
			return nil, fmt.Errorf("cluster meet: %w", err)
		}
	}
	for i, r := range slotRanges {
		if err := do(ctx, c.Nodes[i].Addr(), "CLUSTER", "ADDSLOTSRANGE", r[0], r[1]).Err(); err != nil {
			return nil, fmt.Errorf("cluster addslotsrange on %s: %w", c.Nodes[i].Addr(), err)
		}
	}
	if err := poll(ctx, "every node knows every node", func(ctx context.Context) error {
		for _, n := range c.Nodes {
			f, err := clusterInfo(ctx, n.Addr())
			if err != nil {
				return err
			}
			if f["cluster_known_nodes"] != "6" {
				return fmt.Errorf("%s knows %s nodes", n.Addr(), f["cluster_known_nodes"])
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for i := range 3 {
		id, err := do(ctx, c.Nodes[i].Addr(), "CLUSTER", "MYID").Text()
		if err != nil {
			return nil, fmt.Errorf("cluster myid: %w", err)
		}
		// The replica must know the primary as a primary (with slots)
		// before it may replicate it: gossip, so retried.
		if err := poll(ctx, "cluster replicate", func(ctx context.Context) error {
			return do(ctx, c.Nodes[i+3].Addr(), "CLUSTER", "REPLICATE", id).Err()
		}); err != nil {
			return nil, err
		}
	}
	if err := c.waitHealthy(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// waitHealthy waits until every live node reports the cluster ok and sees
// three shards serving slots, each with one primary and one replica
// online, and every replica's link is up.
func (c *Cluster) waitHealthy(ctx context.Context) error {
	return poll(ctx, "cluster healthy", func(ctx context.Context) error {
		for _, n := range c.live() {
			f, err := clusterInfo(ctx, n.Addr())
			if err != nil {
				return err
			}
			if f["cluster_state"] != "ok" || f["cluster_slots_ok"] != "16384" {
				return fmt.Errorf("%s: state %s, %s slots ok", n.Addr(), f["cluster_state"], f["cluster_slots_ok"])
			}
			shards, err := clusterShards(ctx, n.Addr())
			if err != nil {
				return err
			}
			served := 0
			for _, sh := range shards {
				if len(sh.Slots) == 0 {
					continue
				}
				served++
				online := map[string]int{}
				for _, nd := range sh.Nodes {
					if nd.Health == "online" {
						online[nd.Role]++
					}
				}
				if online["master"] != 1 || online["replica"] != 1 {
					return fmt.Errorf("%s: slots from %d: %d primaries and %d replicas online", n.Addr(), sh.Slots[0].Start, online["master"], online["replica"])
				}
			}
			if served != 3 {
				return fmt.Errorf("%s sees %d shards serving slots", n.Addr(), served)
			}
			if r, up, err := role(ctx, n.Addr()); err != nil || (r == "slave" && !up) {
				return fmt.Errorf("%s: role %s, link up %v (%v)", n.Addr(), r, up, err)
			}
		}
		return nil
	})
}

func clusterInfo(ctx context.Context, addr string) (map[string]string, error) {
	s, err := do(ctx, addr, "CLUSTER", "INFO").Text()
	if err != nil {
		return nil, fmt.Errorf("cluster info on %s: %w", addr, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

func clusterShards(ctx context.Context, addr string) ([]redis.ClusterShard, error) {
	cl := client(addr)
	defer cl.Close()
	s, err := cl.ClusterShards(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster shards on %s: %w", addr, err)
	}
	return s, nil
}

// live are the nodes running and not paused.
func (c *Cluster) live() []*redisproc.Server {
	var out []*redisproc.Server
	for _, n := range c.Nodes {
		if n.Pid() != 0 && !n.Paused() {
			out = append(out, n)
		}
	}
	return out
}

// Addrs are every node's address.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the REDIS_URL of the cluster: every node as a seed.
func (c *Cluster) URL() string {
	q := url.Values{}
	for _, a := range c.Addrs()[1:] {
		q.Add("addr", a)
	}
	return "redis://" + c.Nodes[0].Addr() + "?" + q.Encode()
}

// Client is a cluster client of every node, closed when the test ends. It
// re-reads the slot map every second, as pixelflow's does (redisurl).
func (c *Cluster) Client() *redis.ClusterClient {
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DialTimeout: time.Second, ClusterStateReloadInterval: time.Second})
	c.tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// URLClient is the client pixelflow makes of URL (redisurl, as from
// REDIS_URL), closed when the test ends: the tests that prove the product
// on a cluster go through the same parsing and options it does.
func (c *Cluster) URLClient() redis.UniversalClient {
	c.tb.Helper()
	tg, err := redisurl.Parse(c.URL())
	if err != nil || tg.Mode != redisurl.Cluster {
		c.tb.Fatalf("REDIS_URL %s: mode %v, %v; want a cluster", c.URL(), tg.Mode, err)
	}
	cl := tg.Client()
	c.tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

func (c *Cluster) node(addr string) (*redisproc.Server, error) {
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no cluster node at %s", addr)
}

// Slot is key's hash slot, as the cluster computes it.
func (c *Cluster) Slot(ctx context.Context, key string) (int, error) {
	var last error
	for _, n := range c.live() {
		s, err := do(ctx, n.Addr(), "CLUSTER", "KEYSLOT", key).Int()
		if err == nil {
			return s, nil
		}
		last = err
	}
	return 0, fmt.Errorf("cluster keyslot %q: %w", key, errors.Join(errors.New("no live node answered"), last))
}

// owners returns, for key's slot, the primary and replicas each live node
// names, checking that they all name the same primary.
func (c *Cluster) owners(ctx context.Context, key string) (*redisproc.Server, []*redisproc.Server, error) {
	slot, err := c.Slot(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	return c.slotOwners(ctx, slot)
}

// slotOwners returns the primary and replicas of slot every live node
// names, checking that they all name the same primary.
func (c *Cluster) slotOwners(ctx context.Context, slot int) (*redisproc.Server, []*redisproc.Server, error) {
	var primary string
	var replicas []string
	for _, n := range c.live() {
		shards, err := clusterShards(ctx, n.Addr())
		if err != nil {
			return nil, nil, err
		}
		var masters, reps []string
		for _, sh := range shards {
			if !hasSlot(sh, slot) {
				continue
			}
			for _, nd := range sh.Nodes {
				addr := hostPort(nd)
				switch nd.Role {
				case "master":
					masters = append(masters, addr)
				case "replica":
					reps = append(reps, addr)
				}
			}
		}
		switch {
		case len(masters) != 1:
			return nil, nil, fmt.Errorf("slot %d: %s names primaries %v", slot, n.Addr(), masters)
		case primary == "":
			primary, replicas = masters[0], reps
		case masters[0] != primary:
			return nil, nil, fmt.Errorf("slot %d: %s names primary %s, another node %s", slot, n.Addr(), masters[0], primary)
		}
	}
	p, err := c.node(primary)
	if err != nil {
		return nil, nil, err
	}
	var reps []*redisproc.Server
	for _, a := range replicas {
		r, err := c.node(a)
		if err != nil {
			return nil, nil, err
		}
		reps = append(reps, r)
	}
	return p, reps, nil
}

func hasSlot(sh redis.ClusterShard, slot int) bool {
	for _, r := range sh.Slots {
		if int(r.Start) <= slot && slot <= int(r.End) {
			return true
		}
	}
	return false
}

func hostPort(n redis.Node) string { return net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10)) }

// PrimaryFor is the primary of key's slot, as every live node names it
// and as it says itself.
func (c *Cluster) PrimaryFor(ctx context.Context, key string) (*redisproc.Server, error) {
	p, _, err := c.owners(ctx, key)
	if err != nil {
		return nil, err
	}
	if r, _, err := role(ctx, p.Addr()); err != nil || r != "master" {
		return nil, fmt.Errorf("the cluster names %s primary of %q, which says it is %q (%v)", p.Addr(), key, r, err)
	}
	return p, nil
}

// KillPrimary SIGKILLs the primary of key's slot and returns it; its
// replica takes over after about twice NodeTimeout.
func (c *Cluster) KillPrimary(ctx context.Context, key string) (*redisproc.Server, error) {
	p, err := c.PrimaryFor(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("kill primary: %w", err)
	}
	p.Kill()
	return p, nil
}

// PauseReplication SIGSTOPs the replicas of key's slot and cuts their
// links: its primary goes
// on acknowledging writes they do not have (see SentinelSet's). The
// returned function resumes them (the test's end does too).
func (c *Cluster) PauseReplication(ctx context.Context, key string) (resume func() error, err error) {
	p, reps, err := c.owners(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("pause replication: %w", err)
	}
	return pause(ctx, c.tb, p, reps)
}

// Failover makes a replica of key's slot its primary, planned (CLUSTER
// FAILOVER on the replica: it waits until it has everything the primary
// acknowledged). It returns the primary of before.
func (c *Cluster) Failover(ctx context.Context, key string) (*redisproc.Server, error) {
	p, reps, err := c.owners(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	if len(reps) == 0 {
		return nil, fmt.Errorf("failover: %q's primary %s has no replica", key, p.Addr())
	}
	if err := do(ctx, reps[0].Addr(), "CLUSTER", "FAILOVER").Err(); err != nil {
		return nil, fmt.Errorf("cluster failover on %s: %w", reps[0].Addr(), err)
	}
	return p, nil
}

// WaitNewPrimary waits until every live node names a primary of key's
// slot other than old, which says it is one and reports the cluster ok;
// it returns it.
func (c *Cluster) WaitNewPrimary(ctx context.Context, key string, old *redisproc.Server) (*redisproc.Server, error) {
	var p *redisproc.Server
	err := poll(ctx, "new primary of "+key, func(ctx context.Context) error {
		n, err := c.PrimaryFor(ctx, key)
		if err != nil {
			return err
		}
		if n == old {
			return errors.New("the cluster still names the old primary")
		}
		f, err := clusterInfo(ctx, n.Addr())
		if err != nil {
			return err
		}
		if f["cluster_state"] != "ok" {
			return fmt.Errorf("new primary %s: cluster state %s", n.Addr(), f["cluster_state"])
		}
		p = n
		return nil
	})
	return p, err
}
