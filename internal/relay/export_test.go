package relay

import (
	"context"
	"time"
)

// WatchWithSleep runs r's outbox watcher with sleep in place of its wait
// between watches, so a test sees the backoff delays without waiting them.
func WatchWithSleep(ctx context.Context, r *Relay, sleep func(context.Context, time.Duration)) <-chan struct{} {
	r.sleep = sleep
	return r.watch(ctx)
}
