package redistopo

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// SentinelOptions shape a Sentinel topology.
type SentinelOptions struct {
	// Replicas of the primary: 1 (default) or 2.
	Replicas int
	// MasterName is the name the Sentinels monitor (default "pixelflow").
	MasterName string
	// DownAfter is how long a primary may be silent before a Sentinel
	// thinks it down (default 1s); the quorum is 2 of the 3 Sentinels.
	DownAfter time.Duration
	// AppendOnly turns AOF on for the data nodes (see redisproc).
	AppendOnly bool
}

// SentinelSet is a primary, its replicas and three Sentinels.
type SentinelSet struct {
	tb         testing.TB
	MasterName string
	// Nodes are the data nodes; Nodes[0] was the primary at start. Which
	// is primary now is the Sentinels' answer (Primary).
	Nodes []*redisproc.Server
	// Sentinels are the three Sentinels.
	Sentinels []*redisproc.Server
}

// StartSentinel starts the topology and returns once every replica is in
// sync and every Sentinel knows every replica and the other two
// Sentinels: from then on a failover can be agreed.
func StartSentinel(tb testing.TB, opts SentinelOptions) *SentinelSet {
	tb.Helper()
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Replicas < 1 || opts.Replicas > 2 {
		tb.Fatalf("redistopo: %d replicas: want 1 or 2", opts.Replicas)
	}
	if opts.MasterName == "" {
		opts.MasterName = "pixelflow"
	}
	if opts.DownAfter == 0 {
		opts.DownAfter = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	start := time.Now()
	s, err := startSentinel(ctx, tb, opts)
	if err != nil {
		tb.Fatalf("redistopo: sentinel topology: %v", err)
	}
	tb.Logf("redistopo: primary, %d replicas and 3 sentinels up in %s", opts.Replicas, time.Since(start).Round(time.Millisecond))
	return s
}

func startSentinel(ctx context.Context, tb testing.TB, opts SentinelOptions) (*SentinelSet, error) {
	dir := tb.TempDir()
	s := &SentinelSet{tb: tb, MasterName: opts.MasterName}
	primary, err := node(ctx, tb, dir, "node0", redisproc.Options{AppendOnly: opts.AppendOnly})
	if err != nil {
		return nil, err
	}
	s.Nodes = append(s.Nodes, primary)
	for i := 1; i <= opts.Replicas; i++ {
		r, err := node(ctx, tb, dir, "node"+strconv.Itoa(i), redisproc.Options{AppendOnly: opts.AppendOnly,
			Args: primary.ReplicaArgs()})
		if err != nil {
			return nil, err
		}
		s.Nodes = append(s.Nodes, r)
	}
	if err := WaitReplicasOnline(ctx, primary, opts.Replicas); err != nil {
		return nil, err
	}
	ms := strconv.FormatInt(opts.DownAfter.Milliseconds(), 10)
	conf := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
		"sentinel down-after-milliseconds %[1]s %[3]s\n"+
		"sentinel failover-timeout %[1]s %[4]d\n"+
		"sentinel parallel-syncs %[1]s 1\n",
		opts.MasterName, port(primary), ms, max(3*opts.DownAfter.Milliseconds(), 3000))
	for i := range 3 {
		sn, err := node(ctx, tb, dir, "sentinel"+strconv.Itoa(i), redisproc.Options{Sentinel: true, Config: conf})
		if err != nil {
			return nil, err
		}
		s.Sentinels = append(s.Sentinels, sn)
	}
	// Sentinels find the replicas (INFO of the primary) and each other
	// (hello messages every 2s) on their own; a failover needs both.
	for _, sn := range s.Sentinels {
		if err := poll(ctx, "sentinel "+sn.Addr()+" sees the topology", func(ctx context.Context) error {
			reps, err := do(ctx, sn.Addr(), "SENTINEL", "REPLICAS", s.MasterName).Slice()
			if err != nil {
				return err
			}
			sens, err := do(ctx, sn.Addr(), "SENTINEL", "SENTINELS", s.MasterName).Slice()
			if err != nil {
				return err
			}
			if len(reps) != opts.Replicas || len(sens) != 2 {
				return fmt.Errorf("knows %d replicas and %d other sentinels", len(reps), len(sens))
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func port(s *redisproc.Server) int {
	_, p, _ := strings.Cut(s.Addr(), ":")
	n, _ := strconv.Atoi(p)
	return n
}

// URL is the REDIS_URL of the topology: every Sentinel, and the master name.
func (s *SentinelSet) URL() string {
	q := url.Values{"master_name": {s.MasterName}}
	for _, sn := range s.Sentinels[1:] {
		q.Add("addr", sn.Addr())
	}
	return "redis://" + s.Sentinels[0].Addr() + "?" + q.Encode()
}

// node returns the data node listening on addr.
func (s *SentinelSet) node(addr string) (*redisproc.Server, error) {
	for _, n := range s.Nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no data node at %s", addr)
}

// primaryAddrs asks every live Sentinel which address is the primary.
func (s *SentinelSet) primaryAddrs(ctx context.Context) ([]string, error) {
	var out []string
	for _, sn := range s.Sentinels {
		if sn.Pid() == 0 {
			continue
		}
		hp, err := do(ctx, sn.Addr(), "SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("sentinel %s: %w", sn.Addr(), err)
		}
		if len(hp) != 2 {
			return nil, fmt.Errorf("sentinel %s answered %q", sn.Addr(), hp)
		}
		out = append(out, hp[0]+":"+hp[1])
	}
	return out, nil
}

// Primary is the data node the Sentinels agree is the primary, and that
// says so itself.
func (s *SentinelSet) Primary(ctx context.Context) (*redisproc.Server, error) {
	addrs, err := s.primaryAddrs(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs[1:] {
		if a != addrs[0] {
			return nil, fmt.Errorf("sentinels disagree on the primary: %v", addrs)
		}
	}
	n, err := s.node(addrs[0])
	if err != nil {
		return nil, err
	}
	if r, _, err := role(ctx, n.Addr()); err != nil || r != "master" {
		return nil, fmt.Errorf("sentinels name %s, which says it is %q (%v)", n.Addr(), r, err)
	}
	return n, nil
}

// Replicas are the data nodes other than the current primary.
func (s *SentinelSet) Replicas(ctx context.Context) ([]*redisproc.Server, error) {
	p, err := s.Primary(ctx)
	if err != nil {
		return nil, err
	}
	var out []*redisproc.Server
	for _, n := range s.Nodes {
		if n != p {
			out = append(out, n)
		}
	}
	return out, nil
}

// KillPrimary SIGKILLs the current primary and returns it (Restart brings
// it back; the Sentinels then make it a replica of the new primary).
func (s *SentinelSet) KillPrimary(ctx context.Context) (*redisproc.Server, error) {
	p, err := s.Primary(ctx)
	if err != nil {
		return nil, fmt.Errorf("kill primary: %w", err)
	}
	p.Kill()
	return p, nil
}

// PauseReplication SIGSTOPs every replica and cuts its link: the primary
// goes on acknowledging writes that no replica has. A replica paused for less
// than DownAfter stays eligible for promotion, so a KillPrimary during
// the pause loses acknowledged writes, as an asynchronous replica does.
// The returned function resumes them (the test's end does too).
func (s *SentinelSet) PauseReplication(ctx context.Context) (resume func() error, err error) {
	p, err := s.Primary(ctx)
	if err != nil {
		return nil, fmt.Errorf("pause replication: %w", err)
	}
	reps, err := s.Replicas(ctx)
	if err != nil {
		return nil, fmt.Errorf("pause replication: %w", err)
	}
	return pause(ctx, s.tb, p, reps)
}

// Failover asks a Sentinel for a planned failover (SENTINEL FAILOVER):
// the primary stops taking writes, a replica catches up and is promoted.
// It returns the primary of before; WaitNewPrimary waits for the new one.
func (s *SentinelSet) Failover(ctx context.Context) (*redisproc.Server, error) {
	old, err := s.Primary(ctx)
	if err != nil {
		return nil, fmt.Errorf("failover: %w", err)
	}
	err = poll(ctx, "sentinel failover", func(ctx context.Context) error {
		// NOGOODSLAVE while the Sentinels still learn the replicas' state.
		return do(ctx, s.Sentinels[0].Addr(), "SENTINEL", "FAILOVER", s.MasterName).Err()
	})
	if err != nil {
		return nil, err
	}
	return old, nil
}

// WaitNewPrimary waits until every live Sentinel names a primary other
// than old and that node says it is the primary; it returns it. The other
// replicas may still be joining it (WaitReplicasLinked).
func (s *SentinelSet) WaitNewPrimary(ctx context.Context, old *redisproc.Server) (*redisproc.Server, error) {
	var p *redisproc.Server
	err := poll(ctx, "new primary", func(ctx context.Context) error {
		n, err := s.Primary(ctx)
		if err != nil {
			return err
		}
		if n == old {
			return errors.New("the sentinels still name the old primary")
		}
		p = n
		return nil
	})
	return p, err
}

// WaitReplicasLinked waits until every live data node but the primary
// replicates from it with its link up (after a failover, the Sentinels
// reconfigure the others one by one).
func (s *SentinelSet) WaitReplicasLinked(ctx context.Context) error {
	return poll(ctx, "replicas linked", func(ctx context.Context) error {
		p, err := s.Primary(ctx)
		if err != nil {
			return err
		}
		for _, n := range s.Nodes {
			if n == p || n.Pid() == 0 || n.Paused() {
				continue
			}
			f, err := info(ctx, n.Addr(), "replication")
			if err != nil {
				return err
			}
			if f["role"] != "slave" || f["master_port"] != strconv.Itoa(port(p)) || f["master_link_status"] != "up" {
				return fmt.Errorf("%s: role %s, primary port %s, link %s", n.Addr(), f["role"], f["master_port"], f["master_link_status"])
			}
		}
		return nil
	})
}
