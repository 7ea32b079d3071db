package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisproc"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

// Replicated Redis for a cluster (Options.Redis): the api and gateway
// processes reach a Sentinel-managed primary with one replica, or a
// 3×2 Redis Cluster, through the REDIS_URL forms package redisurl accepts,
// as production deployments do. The topologies are package redistopo's:
// real redis-server children on loopback, with AOF on so a killed node
// comes back with its data (a deposed primary that rejoins holds what it
// had, and must change nothing).
//
// There is no proxy in front of them: a Sentinel answers with the data
// nodes' own addresses and a cluster's MOVED replies name its nodes', so a
// single proxy could carry none of it. Their faults are done on the
// processes instead (kill, pause replication, failover): see the drills in
// package chaos (failover.go). They run on either provider, since
// redis-server children need no Docker; a missing redis-server fails the
// start.

// singleRedis reports whether m means one Redis node.
func singleRedis(m redisurl.Mode) bool { return m == "" || m == redisurl.Single }

// Options of the topologies the drills and suites run on: a primary
// silent for 1 s is down (DownAfter, NodeTimeout), so a failover takes
// seconds.
var (
	sentinelOptions = redistopo.SentinelOptions{Replicas: 1, DownAfter: time.Second, AppendOnly: true}
	clusterOptions  = redistopo.ClusterOptions{NodeTimeout: time.Second, AppendOnly: true}
)

// startReplicatedRedis starts the topology mode names, sets RedisURL to
// it and takes the Redis link out of the partitionable ones. It reports
// false, doing nothing, for one node.
func (c *Cluster) startReplicatedRedis(mode redisurl.Mode) (bool, error) {
	if singleRedis(mode) {
		return false, nil
	}
	if mode != redisurl.Sentinel && mode != redisurl.Cluster {
		return false, fmt.Errorf("redis %q: want %s, %s or %s", mode, redisurl.Single, redisurl.Sentinel, redisurl.Cluster)
	}
	if c.tb == nil {
		return false, fmt.Errorf("redis %s: a replicated topology ties its processes to a test: start the cluster with Start, not Launch", mode)
	}
	if err := redisproc.Installed(); err != nil {
		return false, fmt.Errorf("redis %s: %w", mode, err)
	}
	switch mode {
	case redisurl.Sentinel:
		c.Sentinel = redistopo.StartSentinel(c.tb, sentinelOptions)
		c.RedisURL = c.Sentinel.URL()
	case redisurl.Cluster:
		c.RedisCluster = redistopo.StartCluster(c.tb, clusterOptions)
		c.RedisURL = c.RedisCluster.URL()
	}
	c.Topology.Redis = mode
	c.Topology.Links = slices.DeleteFunc(c.Topology.Links, func(l Link) bool { return l == LinkRedis })
	return true, nil
}

// redisAddrs says where Redis is, for the start's log line.
func (c *Cluster) redisAddrs() string {
	if c.redis != nil {
		return c.redis.Addr()
	}
	return string(c.Topology.Redis) + " " + redisurl.Redact(c.RedisURL)
}

// Redis is a client of the cluster's Redis as pixelflow reaches it (its
// REDIS_URL: the proxy, the Sentinels or the cluster's seeds), for drills
// that read the stream. The caller closes it.
func (c *Cluster) Redis() (redis.UniversalClient, error) {
	t, err := redisurl.Parse(c.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis client of %s: %w", redisurl.Redact(c.RedisURL), err)
	}
	return t.Client(), nil
}

// RedisNode is one data node of a replicated topology, as a fault sees it.
type RedisNode = *redisproc.Server

// Primary is the data node that holds key now: the Sentinels' primary,
// or the cluster's primary of key's slot.
func (c *Cluster) Primary(ctx context.Context, key string) (RedisNode, error) {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.Primary(ctx)
	case c.RedisCluster != nil:
		return c.RedisCluster.PrimaryFor(ctx, key)
	}
	return nil, errNotReplicated
}

// KillPrimary SIGKILLs the data node holding key and returns it: the
// Sentinels, or the cluster, promote a replica.
func (c *Cluster) KillPrimary(ctx context.Context, key string) (RedisNode, error) {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.KillPrimary(ctx)
	case c.RedisCluster != nil:
		return c.RedisCluster.KillPrimary(ctx, key)
	}
	return nil, errNotReplicated
}

// PauseReplication stops the replicas of key's primary (SIGSTOP, links
// cut): the primary acknowledges writes no replica has. resume continues
// them.
func (c *Cluster) PauseReplication(ctx context.Context, key string) (resume func() error, err error) {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.PauseReplication(ctx)
	case c.RedisCluster != nil:
		return c.RedisCluster.PauseReplication(ctx, key)
	}
	return nil, errNotReplicated
}

// Failover is a planned failover of key's primary (SENTINEL FAILOVER,
// CLUSTER FAILOVER); it returns the primary of before.
func (c *Cluster) Failover(ctx context.Context, key string) (RedisNode, error) {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.Failover(ctx)
	case c.RedisCluster != nil:
		return c.RedisCluster.Failover(ctx, key)
	}
	return nil, errNotReplicated
}

// WaitNewPrimary waits until the topology agrees on a primary of key
// other than old and returns it.
func (c *Cluster) WaitNewPrimary(ctx context.Context, key string, old RedisNode) (RedisNode, error) {
	switch {
	case c.Sentinel != nil:
		return c.Sentinel.WaitNewPrimary(ctx, old)
	case c.RedisCluster != nil:
		return c.RedisCluster.WaitNewPrimary(ctx, key, old)
	}
	return nil, errNotReplicated
}

// ReplicaOf waits until node replicates primary with its link up (a
// deposed primary restarted and demoted) and its replication offset has
// reached the primary's of when the wait began: it then holds the
// primary's data, not its own of before.
func (c *Cluster) ReplicaOf(ctx context.Context, node, primary RedisNode) error {
	if c.Sentinel == nil && c.RedisCluster == nil {
		return errNotReplicated
	}
	var want int64 = -1
	var last error
	for {
		pf, err := replicationInfo(ctx, primary.Addr())
		if err == nil && want < 0 {
			_, err = fmt.Sscan(pf["master_repl_offset"], &want)
		}
		var nf map[string]string
		if err == nil {
			nf, err = replicationInfo(ctx, node.Addr())
		}
		if err == nil {
			var off int64
			_, _ = fmt.Sscan(nf["slave_repl_offset"], &off)
			_, port, _ := strings.Cut(primary.Addr(), ":")
			switch {
			case nf["role"] != "slave" || nf["master_port"] != port || nf["master_link_status"] != "up":
				err = fmt.Errorf("%s: role %s, primary port %s (want %s), link %s", node.Addr(), nf["role"], nf["master_port"], port, nf["master_link_status"])
			case off < want:
				err = fmt.Errorf("%s: replication offset %d, primary's was %d", node.Addr(), off, want)
			default:
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s as a replica of %s: %w (last: %v)", node.Addr(), primary.Addr(), ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// replicationInfo is INFO replication of addr, as fields.
func replicationInfo(ctx context.Context, addr string) (map[string]string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second, MaxRetries: -1, PoolSize: 1})
	defer cl.Close()
	s, err := cl.Info(ctx, "replication").Result()
	if err != nil {
		return nil, fmt.Errorf("info replication on %s: %w", addr, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// errNotReplicated: a topology fault asked of a cluster on one Redis node.
var errNotReplicated = errors.New("the cluster's Redis is one node, not a replicated topology (Options.Redis)")
