package stream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Probe is the readiness check of a process that writes to Redis (a
// relay, a gateway): a PING says a node answers, not that pixelflow can
// write there. It writes Keys.Probe (expiring after a minute) where the
// canvas's keys live, so a REDIS_URL that reaches a replica, a demoted
// primary or a Cluster slot without a primary fails it. Its error's
// Condition says which.
func (s *Stream) Probe(ctx context.Context) error {
	if err := s.rdb.Set(ctx, s.keys.Probe, time.Now().UnixMilli(), time.Minute).Err(); err != nil {
		return fmt.Errorf("write to Redis (%s): %w", Condition(err), err)
	}
	return nil
}

// Condition names the state of Redis an error shows, as /readyz reports
// it: "read_only" (the node is a replica: a demoted primary, or REDIS_URL
// names a replica), "cluster_down" (the canvas's slot has no primary),
// "unknown_master" (no Sentinel knows REDIS_URL's master_name),
// "sentinels_unreachable", "loading" (a node loading its data after a
// restart), "timeout", else "unreachable".
func Condition(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "READONLY"):
		return "read_only"
	case strings.Contains(msg, "CLUSTERDOWN"):
		return "cluster_down"
	case strings.Contains(msg, "LOADING"):
		return "loading"
	case strings.Contains(msg, "all sentinels specified in configuration are unreachable"):
		// A Sentinel that answers but knows no such master replies nil,
		// which go-redis counts as that Sentinel failing.
		if strings.Contains(msg, "redis: nil") {
			return "unknown_master"
		}
		return "sentinels_unreachable"
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(msg, "i/o timeout"):
		return "timeout"
	}
	return "unreachable"
}
