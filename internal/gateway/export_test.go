package gateway

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/stream"
)

// SetBeforeBroadcast installs the crash failpoint (see hooks).
func (g *Gateway) SetBeforeBroadcast(f func(ctx context.Context, entries []stream.Entry) error) {
	g.hooks.beforeBroadcast = f
}

// SetBlock shortens XREADGROUP BLOCK so tests stop gateways quickly.
func (g *Gateway) SetBlock(d time.Duration) { g.block = d }

// Reap runs one reaper pass.
func (g *Gateway) Reap(ctx context.Context) ([]string, error) { return g.reap(ctx) }

// GroupName is this instance's consumer group.
func (g *Gateway) GroupName() string { return g.group }

// BeatKey is the heartbeat sorted set.
func (g *Gateway) BeatKey() string { return g.beatKey }

// Process feeds messages through the consumer's processing as if read from
// the group, with the hub at the given position.
func (g *Gateway) Process(ctx context.Context, msgs []redis.XMessage) error {
	cs := &consumer{g: g, known: true, count: 512, at: g.hub.position()}
	return cs.process(ctx, msgs)
}

// SetPosition moves the hub's position without telling clients.
func (g *Gateway) SetPosition(epoch string, seq uint64) {
	g.hub.mu.Lock()
	g.hub.pos.Epoch, g.hub.pos.Seq = epoch, seq
	g.hub.mu.Unlock()
}

var ErrStopped = errStopped

// SetBeforeGroupCreate installs the init hook (see hooks).
func (g *Gateway) SetBeforeGroupCreate(f func()) { g.hooks.beforeGroupCreate = f }

// SetAfterReapRead installs the reaper hook (see hooks).
func (g *Gateway) SetAfterReapRead(f func()) { g.hooks.afterReapRead = f }

// SetWriterExit installs the writer-exit hook (see hooks).
func (g *Gateway) SetWriterExit(f func()) { g.hooks.writerExit = f }

// LiveWriters is the number of connection writer goroutines running.
func (g *Gateway) LiveWriters() int64 { return g.stats.writers.Load() }
