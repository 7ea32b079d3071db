// Package redistopo starts the Redis topologies pixelflow must survive, as
// redis-server children on 127.0.0.1 (package redisproc): a primary with
// replicas watched by three Sentinels (StartSentinel), and a Redis Cluster
// of three primaries with one replica each (StartCluster). Each start is
// bounded in time, every process is killed by its pid when the test ends,
// and a missing redis-server fails the test.
//
// The faults are the ones a real deployment sees, done for real:
// KillPrimary (SIGKILL), PauseReplication (SIGSTOP of the replicas, so the
// primary acknowledges writes no replica has), Failover (SENTINEL FAILOVER
// or CLUSTER FAILOVER: planned, nothing lost) and WaitNewPrimary, which
// returns once the topology itself (every Sentinel, or every live cluster
// node) agrees on a new primary that says it is one.
//
// Timing is short on purpose (a primary is down after 1s of silence), so
// a failover takes seconds, not the half minute of Redis's defaults.
package redistopo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// StartTimeout bounds each topology's start.
const StartTimeout = 45 * time.Second

// poll calls cond every 50ms until it returns nil or ctx ends; the error
// then says what cond last reported.
func poll(ctx context.Context, what string, cond func(context.Context) error) error {
	var last error
	for {
		if last = cond(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitReplicasOnline waits until n replicas of primary are online (synced
// and streaming): a replica counts as connected at once but syncs only
// after repl-diskless-sync-delay (5 s by default), and until then a WAIT
// times out and the replica holds nothing.
func WaitReplicasOnline(ctx context.Context, primary *redisproc.Server, n int) error {
	return poll(ctx, "replicas in sync", func(ctx context.Context) error {
		f, err := info(ctx, primary.Addr(), "replication")
		if err != nil {
			return err
		}
		online := 0
		for k, v := range f {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
				online++
			}
		}
		if online != n {
			return fmt.Errorf("%d of %d replicas online", online, n)
		}
		return nil
	})
}

// node starts one redis-server for the topology in dir/name, killed when
// the test ends.
func node(ctx context.Context, tb testing.TB, dir, name string, opts redisproc.Options) (*redisproc.Server, error) {
	opts.Dir = filepath.Join(dir, name)
	s, err := redisproc.Start(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	tb.Cleanup(s.Kill)
	return s, nil
}

// client is a short-lived client of one node, without retries: the
// harness asks a node, it does not hope.
func client(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: 2 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRetries: -1, PoolSize: 1})
}

// do runs one command on addr.
func do(ctx context.Context, addr string, args ...any) *redis.Cmd {
	c := client(addr)
	defer c.Close()
	return c.Do(ctx, args...)
}

// info returns the fields of INFO section on addr.
func info(ctx context.Context, addr, section string) (map[string]string, error) {
	c := client(addr)
	defer c.Close()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("info %s on %s: %w", section, addr, err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = v
		}
	}
	return out, nil
}

// role is what addr says it is: "master" or "slave" (and, for a replica,
// whether its link to its primary is up).
func role(ctx context.Context, addr string) (string, bool, error) {
	f, err := info(ctx, addr, "replication")
	if err != nil {
		return "", false, err
	}
	return f["role"], f["master_link_status"] == "up", nil
}

// stopped is a replica paused by PauseReplication.
type stopped []*redisproc.Server

// resume continues every paused replica, returning the first error.
func (s stopped) resume() error {
	var errs []error
	for _, r := range s {
		errs = append(errs, r.Resume())
	}
	return errors.Join(errs...)
}

// pause SIGSTOPs replicas and then cuts their links on primary (CLIENT
// KILL TYPE replica). A stopped process's kernel still takes in what the
// primary sends, and would apply it on resume: cutting the link is what
// keeps later writes on the primary alone. The returned function resumes
// the replicas, which reconnect and catch up from the primary's backlog
// if it still lives; it also runs when the test ends (nothing is left
// stopped).
func pause(ctx context.Context, tb testing.TB, primary *redisproc.Server, replicas []*redisproc.Server) (func() error, error) {
	var st stopped
	for _, r := range replicas {
		if err := r.Pause(); err != nil {
			_ = st.resume()
			return nil, err
		}
		st = append(st, r)
	}
	tb.Cleanup(func() { _ = st.resume() })
	if err := do(ctx, primary.Addr(), "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		_ = st.resume()
		return nil, fmt.Errorf("cut the replicas' links on %s: %w", primary.Addr(), err)
	}
	return st.resume, nil
}
