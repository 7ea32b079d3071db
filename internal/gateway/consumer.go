package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/backoff"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// consumer is the state of the consume loop; only its goroutine touches it.
type consumer struct {
	g *Gateway
	// known is false until the hub's position has been set from Redis.
	known bool
	// needInit makes the next iteration (re)create the group and re-read
	// the epoch: at start, after NOGROUP, after the stream vanished.
	needInit bool
	// pendingFirst makes the next reads re-read this consumer's own pending
	// entries ("0") before new ones (">"): at start and after any error, as
	// an XACK may have been lost.
	pendingFirst bool
	// at is the position of the last entry this loop read (or filled,
	// or resynced past); the hub's position is at or after it, ahead when
	// a relay in this process offered entries before the read.
	at        canvas.Position
	lastClaim time.Time
	count     int64 // XREADGROUP COUNT
	// covered: the last read found only entries that offers had already
	// broadcast, so the next read waits offeredReadPause (see step).
	covered bool
	// acks are the entries of the last read, taken by the hub: they are
	// acknowledged in the same round trip as the next read (an XACK
	// pipelined before the XREADGROUP, which Redis runs first). Still
	// after the hub took them; lost with an error or a crash, they are
	// read again as pending and counted as duplicates.
	acks []string
}

// errStopped is how a test failpoint ends Run.
var errStopped = errors.New("gateway: stopped by failpoint")

// consume is the consumer loop: the only one that moves the hub's position
// to another epoch or past a hole (an offer only continues it).
func (g *Gateway) consume(ctx context.Context) error {
	cs := &consumer{g: g, needInit: true, pendingFirst: true, lastClaim: time.Now()}
	// A batch must fit an empty queue, or every client would be degraded by
	// one read: read at most half a queue at a time.
	cs.count = int64(min(maxReadCount, max(1, g.opts.QueueLen/2)))
	var bo backoff.Backoff
	for ctx.Err() == nil {
		err := cs.step(ctx)
		switch {
		case err == nil:
			bo.Reset()
			continue
		case errors.Is(err, errStopped): // a crash: nothing more is sent
			return err
		case ctx.Err() != nil:
			cs.flushAcks(ctx)
			return nil
		}
		g.fail(err)
		cs.pendingFirst = true
		if isGroupGone(err) {
			cs.needInit = true
		}
		d := bo.Next(50*time.Millisecond, 5*time.Second)
		if cs.at.Epoch == "" && isGroupGone(err) {
			// The stream had no epoch yet and a relay just started the
			// first (StartEpoch replaces the empty stream this gateway
			// joined): what every first start does, not trouble.
			g.log.Info("stream started its first epoch; joining it", "err", err, "in", d)
		} else {
			g.log.Warn("stream read failed; retrying", "err", err, "in", d)
		}
		backoff.Sleep(ctx, d)
	}
	cs.flushAcks(ctx)
	return nil
}

// step does one unit of work: init, a claim pass, or one read.
func (cs *consumer) step(ctx context.Context) error {
	g := cs.g
	if cs.needInit {
		if err := cs.init(ctx); err != nil {
			return err
		}
		cs.needInit = false
	}
	if every := max(g.opts.ClaimIdle/2, 50*time.Millisecond); time.Since(cs.lastClaim) >= every {
		if err := cs.claim(ctx); err != nil {
			return err
		}
		cs.lastClaim = time.Now()
	}
	if cs.covered && !cs.pendingFirst {
		// Offers are keeping up: the read is the record and the safety
		// net, not the delivery, so let entries gather for one read
		// instead of a read (and an XACK) per entry. An entry no offer
		// delivered waits at most this long.
		cs.covered = false
		t := time.NewTimer(offeredReadPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	args := &redis.XReadGroupArgs{
		Group:    g.group,
		Consumer: g.opts.InstanceID,
		Streams:  []string{g.keys.Stream, ">"},
		Count:    cs.count,
		Block:    g.block,
	}
	if cs.pendingFirst {
		args.Streams[1], args.Block = "0", -1
	}
	res, err := cs.read(ctx, args)
	if errors.Is(err, redis.Nil) { // BLOCK timed out: nothing new
		g.ok()
		return nil
	}
	if err != nil {
		return fmt.Errorf("xreadgroup %s: %w", g.group, err)
	}
	g.ok()
	var msgs []redis.XMessage
	if len(res) > 0 {
		msgs = res[0].Messages
	}
	if cs.pendingFirst && len(msgs) == 0 {
		cs.pendingFirst = false
		return nil
	}
	return cs.process(ctx, msgs)
}

// flushAcks acknowledges what the loop left for its next read, as it
// stops: a restart with the same instance id would otherwise deliver those
// entries again. Best effort, bounded: the entries stay pending if Redis
// cannot be reached.
func (cs *consumer) flushAcks(ctx context.Context) {
	if len(cs.acks) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	g := cs.g
	if err := g.opts.Redis.XAck(ctx, g.keys.Stream, g.group, cs.acks...).Err(); err != nil {
		g.log.Warn("final xack failed: those entries stay pending", "err", err, "entries", len(cs.acks))
	}
	cs.acks = nil
}

// read is one XREADGROUP, with the last read's XACK pipelined before it.
// A pipeline's replies wait up to the client's ReadTimeout (3 s, set where
// the client is made), not a blocking command's own: readBlock is shorter.
func (cs *consumer) read(ctx context.Context, args *redis.XReadGroupArgs) ([]redis.XStream, error) {
	g := cs.g
	if len(cs.acks) == 0 {
		return g.opts.Redis.XReadGroup(ctx, args).Result()
	}
	var ack *redis.IntCmd
	var read *redis.XStreamSliceCmd
	// Each command carries its own error (read's may be redis.Nil, a
	// timeout); Pipelined's is only the first of them.
	_, _ = g.opts.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		ack = p.XAck(ctx, g.keys.Stream, g.group, cs.acks...)
		read = p.XReadGroup(ctx, args)
		return nil
	})
	cs.acks = cs.acks[:0]
	if err := ack.Err(); err != nil {
		return nil, fmt.Errorf("xack: %w", err)
	}
	return read.Result()
}

// init joins the current epoch: it makes sure the group exists on the
// epoch's stream and sets the hub's position. The heartbeat is written
// first so that no reaper can see the new group without a live instance
// behind it.
//
// The epoch is read and the group created (or reset) in one script
// (stream.JoinGroup), so no epoch can start in between. A group recreated
// in the epoch the hub follows (reaped while this instance was away)
// starts after what the hub broadcast; in any other epoch it starts at the
// stream's start, and an existing group is set back there: its
// last-delivered id, whatever made it, is not this epoch's start. Before
// this (issue 28 item 1), init read the epoch, then created the group at
// the hub's position; an epoch started between the two left the group on
// the new stream at that position, a retry took its last-delivered id for
// the new epoch's start, and XREADGROUP > never returned the entries below
// it. The next entry followed on exactly, so no client was told.
func (cs *consumer) init(ctx context.Context) error {
	g := cs.g
	if err := g.beat(ctx); err != nil {
		return err
	}
	pos := g.hub.position()
	var j stream.Joined
	var err error
	if g.failpoint("gateway:keep-stale-group") != nil {
		j, err = cs.joinUnchecked(ctx, pos)
	} else {
		if err := cs.beforeGroupCreate(); err != nil {
			return err
		}
		j, err = g.stream.JoinGroup(ctx, g.group, pos, cs.known)
	}
	if err != nil {
		return err
	}
	if !cs.known || j.Epoch != pos.Epoch {
		var base uint64
		if j.Outcome == stream.JoinKept {
			// A restarted instance's own group (the hub holds no position
			// yet): trust its pending list and last-delivered id.
			if base, err = g.groupBase(ctx); err != nil {
				return err
			}
		}
		next := canvas.Position{Epoch: j.Epoch, Seq: base}
		if next != pos {
			g.log.Info("following stream", posAttr(next), "was", pos.String(), "group", j.Outcome)
		}
		g.hub.resync(protocol.ReasonEpoch, next)
		cs.at, cs.known = next, true
	}
	cs.pendingFirst = true
	return nil
}

// beforeGroupCreate is where init may be held between deciding to join
// and joining: the test hook, then the failpoint (a drill holds the
// gateway there with sleep(d) and starts an epoch meanwhile; an error
// fails this init, which is retried).
func (cs *consumer) beforeGroupCreate() error {
	g := cs.g
	if g.hooks.beforeGroupCreate != nil {
		g.hooks.beforeGroupCreate()
	}
	if err := g.failpoint("gateway:before-group-create"); err != nil {
		return fmt.Errorf("before group create: %w", err)
	}
	return nil
}

// joinUnchecked is the join of before issue 28 item 1, with its defect,
// kept only so that tests and drills can show that they catch it
// (failpoint gateway:keep-stale-group): the epoch is read, then the group
// created at the hub's position if the epoch was the hub's, and an epoch
// that moved in between is only noticed afterwards, leaving the group in
// place; the retry meets BUSYGROUP and init trusts its last-delivered id.
func (cs *consumer) joinUnchecked(ctx context.Context, pos canvas.Position) (stream.Joined, error) {
	g := cs.g
	epoch, err := g.opts.Redis.Get(ctx, g.keys.Epoch).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return stream.Joined{}, fmt.Errorf("read epoch: %w", err)
	}
	start := "0"
	if cs.known && epoch == pos.Epoch && pos.Seq > 0 {
		start = stream.ID(pos.Seq)
	}
	if err := cs.beforeGroupCreate(); err != nil {
		return stream.Joined{}, err
	}
	created := true
	if err := g.opts.Redis.XGroupCreateMkStream(ctx, g.keys.Stream, g.group, start).Err(); err != nil {
		if !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return stream.Joined{}, fmt.Errorf("create group %s: %w", g.group, err)
		}
		created = false
	}
	switch now, err := g.opts.Redis.Get(ctx, g.keys.Epoch).Result(); {
	case err != nil && !errors.Is(err, redis.Nil):
		return stream.Joined{}, fmt.Errorf("read epoch: %w", err)
	case now != epoch:
		return stream.Joined{}, fmt.Errorf("stream epoch moved from %q to %q while joining it: joining again", epoch, now)
	}
	j := stream.Joined{Epoch: epoch, Outcome: stream.JoinKept}
	if created {
		j.Outcome = stream.JoinCreated
	}
	return j, nil
}

// groupBase is the position a restarted instance can promise its clients:
// everything after it is either still pending in the group (re-read at
// once) or not yet delivered to it. Acknowledged entries above it are
// re-read by gap filling, harmlessly.
func (g *Gateway) groupBase(ctx context.Context) (uint64, error) {
	groups, err := g.opts.Redis.XInfoGroups(ctx, g.keys.Stream).Result()
	if err != nil {
		return 0, fmt.Errorf("xinfo groups: %w", err)
	}
	var base uint64
	found := false
	for _, gr := range groups {
		if gr.Name == g.group {
			base, found = seqOf(gr.LastDeliveredID), true
		}
	}
	if !found {
		return 0, fmt.Errorf("group %s: %w", g.group, errGroupGone)
	}
	p, err := g.opts.Redis.XPending(ctx, g.keys.Stream, g.group).Result()
	if err != nil {
		return 0, fmt.Errorf("xpending: %w", err)
	}
	if p.Count > 0 {
		if low := seqOf(p.Lower); low > 0 {
			base = min(base, low-1)
		}
	}
	return base, nil
}

// seqOf is the sequence number of an entry id, 0 for "0-0" or junk.
func seqOf(id string) uint64 {
	seq, err := stream.ParseID(id)
	if err != nil {
		return 0
	}
	return seq
}

// claim takes over entries of this group that some consumer read but left
// unacknowledged for longer than ClaimIdle (a previous process under another
// consumer name), and processes them like fresh ones.
func (cs *consumer) claim(ctx context.Context) error {
	g := cs.g
	start := "0-0"
	for range 100 { // bounded: a huge pending list is worked off over several passes
		msgs, next, err := g.opts.Redis.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: g.keys.Stream, Group: g.group, Consumer: g.opts.InstanceID,
			MinIdle: g.opts.ClaimIdle, Start: start, Count: cs.count,
		}).Result()
		if err != nil {
			return fmt.Errorf("xautoclaim: %w", err)
		}
		if len(msgs) > 0 {
			g.log.Info("claimed idle entries", "count", len(msgs), "first", msgs[0].ID)
			if err := cs.process(ctx, msgs); err != nil {
				return err
			}
		}
		if next == "0-0" || next == "" {
			return nil
		}
		start = next
	}
	return nil
}

// process broadcasts what msgs add to the hub's position, in sequence
// order, filling gaps from the stream, then leaves all of msgs to be
// acknowledged with the next read (see consumer.acks). Entries at or below
// cs.at (what this loop already read) are duplicates: counted and acknowledged,
// never broadcast twice. Entries a relay in this process handed over
// before the read (Gateway.Offer) are skipped by the hub, not counted.
func (cs *consumer) process(ctx context.Context, msgs []redis.XMessage) error {
	g := cs.g
	entries := make([]stream.Entry, 0, len(msgs))
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		ids = append(ids, m.ID)
		if len(m.Values) == 0 { // deleted (trimmed) while pending
			continue
		}
		e, err := stream.Decode(m)
		if err != nil {
			// A malformed entry cannot be delivered; the hole it leaves is
			// a gap, which resyncs clients below.
			g.log.Error("undecodable stream entry skipped", "id", m.ID, "err", err)
			continue
		}
		entries = append(entries, e)
	}
	if g.hooks.beforeBroadcast != nil {
		if err := g.hooks.beforeBroadcast(ctx, entries); err != nil {
			return fmt.Errorf("%w: %v", errStopped, err)
		}
	}
	var batch []stream.Entry // contiguous, after cs.at when begun
	took := 0                // entries this read broadcast (not offered before)
	irregular := false       // an epoch change or a gap fill
	flush := func() {
		if len(batch) > 0 {
			took += g.deliver(ctx, batch)
			batch = batch[len(batch):]
		}
	}
	for _, e := range entries {
		if e.Epoch != cs.at.Epoch {
			// The stream was replaced under the group (a new epoch): start
			// over at its beginning; gap filling recovers what precedes e.
			flush()
			g.log.Info("stream epoch changed", "from", cs.at.Epoch, "to", e.Epoch)
			cs.at = canvas.Position{Epoch: e.Epoch}
			g.hub.resync(protocol.ReasonEpoch, cs.at)
			irregular = true
		}
		if e.Seq <= cs.at.Seq {
			g.stats.duplicates.Add(1)
			continue
		}
		// A hole in what this loop read, unless an offer covered it.
		if e.Seq > cs.at.Seq+1 && e.Seq > g.hub.position().Seq+1 {
			flush()
			next, err := cs.fill(ctx, g.hub.position(), e.Seq-1)
			if err != nil {
				return err
			}
			cs.at, irregular = next, true
		}
		batch = append(batch, e)
		cs.at.Seq = e.Seq
	}
	flush()
	cs.covered = len(entries) > 0 && took == 0 && !irregular && g.offered.Load()
	cs.acks = append(cs.acks, ids...)
	return nil
}

// offeredReadPause is how long the consumer loop waits before its next read
// when its last read found only entries an in-process relay had offered
// already (see consumer.covered). At 200 writes/s the loop made one
// XREADGROUP and one XACK per entry; gathered, the redis-server's CPU per
// delivery went from 0.78–0.95 to 0.73–0.78 µs (three same-run pairs).
const offeredReadPause = 20 * time.Millisecond

// deliver hands entries (contiguous, of one epoch) to the hub, and
// observes those it took; it returns how many it took.
func (g *Gateway) deliver(ctx context.Context, entries []stream.Entry) int {
	// What an offer delivered before this read is neither encoded nor
	// traced again; one that races this call is skipped by the hub.
	pos := g.hub.position()
	for len(entries) > 0 && entries[0].Epoch == pos.Epoch && entries[0].Seq <= pos.Seq {
		entries = entries[1:]
	}
	if len(entries) == 0 {
		return 0
	}
	var spans []trace.Span
	for _, e := range entries {
		if sp := g.processSpan(ctx, e); sp != nil {
			spans = append(spans, sp)
		}
	}
	from := g.hub.broadcast(entries[0].Epoch, entries[0].Seq, entries)
	for _, e := range entries[from:] {
		g.observe(e)
	}
	for _, sp := range spans {
		sp.End()
	}
	return len(entries) - from
}

// Offer hands the gateway entries that a relay in the same process is
// about to append to the stream (relay.Options.Numbered), contiguous and in
// sequence order, so that they reach clients without waiting for the XADD's
// round trip and this gateway's read of the stream: together a third of
// commit → broadcast, and most of its tail, on a busy machine. Their
// numbers are recorded in the store before the offer, so whatever becomes
// of the XADD the stream will hold these entries at these numbers, or a
// new epoch resyncs every client. The stream stays the record: the
// consumer loop still reads and acknowledges the same entries, and the hub
// takes offered entries only where they continue its position exactly
// (same epoch, no gap), so an offer is never reordered, repeated or let
// past a hole; it can only be early. Offers that do not fit are dropped and
// the read delivers them. Safe for concurrent use; it does not block on
// clients.
func (g *Gateway) Offer(entries []stream.Entry) {
	g.offered.Store(true)
	if len(entries) == 0 || g.hooks.beforeBroadcast != nil {
		// The test failpoint stands between the read and the hub; an
		// offer would walk around it.
		return
	}
	if pos := g.hub.position(); entries[0].Epoch != pos.Epoch || entries[0].Seq > pos.Seq+1 {
		return
	}
	g.stats.offered.Add(int64(g.deliver(context.Background(), entries)))
}

// fill broadcasts the entries after pos up to seq `to`, read with XRANGE:
// the group skipped them (it was recreated, or a previous process
// acknowledged them). If they are no longer all in the stream, clients
// resync past the hole. It returns the new position, which is always `to`.
func (cs *consumer) fill(ctx context.Context, pos canvas.Position, to uint64) (canvas.Position, error) {
	g := cs.g
	gap := to - pos.Seq
	// A fill larger than half a queue would degrade every client anyway;
	// a resync is cheaper for everyone.
	limit := uint64(min(g.opts.ReplayLimit, max(1, g.opts.QueueLen/2)))
	if gap > limit {
		g.log.Warn("gap too large to fill; clients resync", "from", pos.Seq+1, "to", to)
		end := canvas.Position{Epoch: pos.Epoch, Seq: to}
		g.hub.resync(protocol.ReasonGap, end)
		return end, nil
	}
	from := pos.Seq + 1
	for from <= to {
		msgs, err := g.opts.Redis.XRangeN(ctx, g.keys.Stream, stream.ID(from), stream.ID(to), cs.count).Result()
		if err != nil {
			return pos, fmt.Errorf("fill gap %d..%d: %w", from, to, err)
		}
		batch := make([]stream.Entry, 0, len(msgs))
		for _, m := range msgs {
			e, err := stream.Decode(m)
			if err != nil || e.Seq != from || e.Epoch != pos.Epoch {
				break
			}
			batch = append(batch, e)
			from++
		}
		if len(batch) > 0 {
			g.deliver(ctx, batch)
		}
		if len(batch) < len(msgs) || len(msgs) == 0 {
			break // a hole: trimmed, undecodable, or another epoch
		}
	}
	end := canvas.Position{Epoch: pos.Epoch, Seq: to}
	if from <= to {
		g.log.Warn("gap no longer in the stream; clients resync", "from", from, "to", to)
		g.hub.resync(protocol.ReasonGap, end)
	}
	return end, nil
}

// errGroupGone marks errors after which the group must be recreated.
var errGroupGone = errors.New("consumer group is gone")

// isGroupGone reports errors meaning the stream or the group vanished:
// Redis lost its data, a new epoch replaced the stream, or a reaper
// destroyed the group.
func isGroupGone(err error) bool {
	if errors.Is(err, errGroupGone) {
		return true
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		return strings.HasPrefix(msg, "NOGROUP") || strings.HasPrefix(msg, "UNBLOCKED") ||
			strings.Contains(msg, "no such key")
	}
	return false
}

// observe notes a canary's arrival and feeds the commit → broadcast
// histogram and hook with pixel events.
func (g *Gateway) observe(e stream.Entry) {
	now := time.Now()
	if e.Kind == canvas.KindCanary {
		g.stats.lastCanary.Store(now.UnixNano())
		g.stats.canaryLatency.Store(int64(now.Sub(e.CommittedAt)))
		return
	}
	d := now.Sub(e.CommittedAt)
	g.commitToBroadcast.Observe(d.Seconds())
	if g.opts.OnBroadcast != nil {
		g.opts.OnBroadcast(d)
	}
}

// processSpan starts the consumer span of one entry, a child of the
// relay's publish span carried in the entry, so the pixel's trace runs on
// into the gateway (parent rather than link: one entry is one pixel, and a
// user asks "where did my pixel's time go"). Nil when tracing is off or the
// entry carries no trace. It ends once the entry is handed to the clients.
func (g *Gateway) processSpan(ctx context.Context, e stream.Entry) trace.Span {
	if g.tracer == nil || e.TraceParent == "" {
		return nil
	}
	tp, ts := e.TraceParent, e.TraceState
	parent := g.opts.Propagator.Extract(ctx, telemetry.Carrier{TraceParent: &tp, TraceState: &ts})
	m := telemetry.Message{Destination: g.keys.Stream, Operation: "process", Command: "xreadgroup", Group: g.group, Seq: e.Seq, EventID: e.ID, Epoch: e.Epoch}
	_, sp := g.tracer.Start(parent, m.SpanName(), trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(m.Attributes()...))
	return sp
}
