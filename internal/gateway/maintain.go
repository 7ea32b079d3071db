package gateway

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/internal/stream"
)

// Liveness of gateway instances lives in one sorted set per canvas
// (stream.Keys.Gateways), member = instance id, score = the Redis server's
// clock in milliseconds at its last heartbeat (stream.Heartbeat). Using the
// server's clock for both writing and judging makes the reaper immune to
// skew between hosts.

// maintain heartbeats, reaps dead instances' groups and measures lag every
// HeartbeatInterval until ctx ends. Errors are recorded and retried next tick.
func (g *Gateway) maintain(ctx context.Context) {
	t := time.NewTicker(g.opts.HeartbeatInterval)
	defer t.Stop()
	// A gateway reaps only once it has itself been heartbeating for a whole
	// GroupTTL: after a Redis outage every heartbeat is stale, and the first
	// gateway back must not destroy the groups of the others, who are alive
	// and about to heartbeat again.
	var beatingSince time.Time
	for {
		if err := g.beat(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			beatingSince = time.Time{}
			g.log.Debug("heartbeat failed", "err", err)
		} else {
			if beatingSince.IsZero() {
				beatingSince = time.Now()
			}
			if time.Since(beatingSince) >= g.opts.GroupTTL {
				if _, err := g.reap(ctx); err != nil && ctx.Err() == nil {
					g.log.Warn("reaping dead gateway groups failed", "err", err)
				}
			}
			g.measureLag(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// beat records that this instance is alive.
func (g *Gateway) beat(ctx context.Context) error {
	_, err := g.stream.Heartbeat(ctx, g.opts.InstanceID)
	return err
}

// reap destroys the consumer groups of gateway instances whose heartbeat is
// older than GroupTTL (or missing: every live gateway writes its heartbeat
// before creating its group), and forgets their heartbeats. It never touches
// this instance's group, nor groups that are not gateways'. An instance that
// was only partitioned away recreates its group when it returns and fills
// the gap from the stream.
//
// The read of heartbeats and groups only picks the candidates: each is
// judged again and reaped in one script (stream.Reap), so an instance that
// beat after the read keeps its group and its heartbeat. Before that
// (issue 28 item 3.1) the reaper destroyed and ZREMed from its read alone,
// and a gateway that had just beaten, or just started, lost both.
func (g *Gateway) reap(ctx context.Context) ([]string, error) {
	now, err := g.stream.Clock(ctx) // the heartbeats' node's clock, also on a Cluster
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-g.opts.GroupTTL).UnixMilli()
	beats, err := g.opts.Redis.ZRangeWithScores(ctx, g.beatKey, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read heartbeats: %w", err)
	}
	alive := make(map[string]bool, len(beats))
	stale := make(map[string]bool)
	for _, b := range beats {
		id, _ := b.Member.(string)
		if int64(b.Score) >= cutoff {
			alive[id] = true
		} else if id != g.opts.InstanceID {
			stale[id] = true
		}
	}
	groups, err := g.opts.Redis.XInfoGroups(ctx, g.keys.Stream).Result()
	if err != nil && !isNoSuchKey(err) {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	if g.hooks.afterReapRead != nil {
		g.hooks.afterReapRead()
	}
	// The window between the read and the destroy, where a drill or the
	// nemesis holds the reaper (sleep) while the instances it judged beat,
	// rejoin or die; an error ends this pass with nothing destroyed.
	if err := g.failpoint("gateway:reap-before-destroy"); err != nil {
		return nil, fmt.Errorf("reap before destroy: %w", err)
	}
	var reaped []string
	for _, gr := range groups {
		id, ok := stream.GroupInstance(gr.Name)
		if !ok || id == g.opts.InstanceID || alive[id] {
			continue
		}
		delete(stale, id)
		spared, destroyed, err := g.stream.Reap(ctx, id, gr.Name, g.opts.GroupTTL)
		if err != nil {
			return reaped, err
		}
		if spared {
			g.log.Debug("spared a gateway that beat after the reaper's read", "group", gr.Name)
			continue
		}
		if !destroyed { // another gateway reaped it first
			continue
		}
		g.stats.reaped.Add(1)
		reaped = append(reaped, gr.Name)
		g.log.Info("reaped the group of a dead gateway", "group", gr.Name, "pending", gr.Pending)
	}
	for id := range stale { // heartbeats without a group
		if _, _, err := g.stream.Reap(ctx, id, "", g.opts.GroupTTL); err != nil {
			return reaped, fmt.Errorf("forget stale heartbeat: %w", err)
		}
	}
	return reaped, nil
}

// measureLag records how many stream entries the hub has yet to broadcast.
func (g *Gateway) measureLag(ctx context.Context) {
	tail, err := g.stream.Tail(ctx)
	if err != nil {
		return
	}
	pos := g.hub.position()
	lag := int64(tail.Seq)
	if tail.Epoch == pos.Epoch {
		lag = int64(tail.Seq) - int64(pos.Seq)
	}
	g.stats.lag.Store(max(lag, 0))
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "no such key")
}
