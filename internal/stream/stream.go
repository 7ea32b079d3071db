// Package stream is the Redis side of pixelflow's event path: the layout of the
// canvas stream, the encoding of its entries and the atomic publish that the
// relay (the single sequencer) uses and the gateways read.
//
// This package owns the whole Redis layout: every key, the gateways'
// consumer group names and every Lua script (lua/*.lua). Other packages ask
// it (KeysFor, GroupName) rather than spell a key; a test fails when the key
// prefix or the group prefix appears anywhere else in the tree.
//
// Layout, per canvas (hash-tagged so a cluster keeps them on one slot):
//
//	pf:{<canvas>}:stream    the events; entry id "<seq>-0", seq contiguous from 1
//	pf:{<canvas>}:epoch     the epoch the stream belongs to
//	pf:{<canvas>}:term      the newest sequencer lease term that wrote here
//	pf:{<canvas>}:gateways  gateway liveness: sorted set, member = instance id,
//	                        score = the Redis server's clock (ms) at its last heartbeat
//	pf:{<canvas>}:ops       the /ops dashboard's figures: hash, field = instance id
//	pf:{<canvas>}:durable   the replication barrier's write (see Replicated)
//
// Consumer groups on the stream: "gw:<instance>" for each gateway instance
// (GroupName); gateways reap only groups with that prefix.
//
// The epoch is created with the stream. When Redis comes back without it
// (restart without persistence), the relay starts a new epoch and republishes
// from the durable outbox; readers that see another epoch resync.
//
// Redis Cluster: the hash tag puts every key of a canvas in one slot, every
// script is given all the keys it touches in KEYS, and every multi-key
// call (the scripts, Tail's MULTI) names keys of one canvas only; the
// cluster and ACL tests (cluster_test.go, scripts_test.go) hold each
// script to that. Commands without a key (TIME) are not used: they would
// go to any node (Clock instead). The one exception, WAIT, runs on the
// connection that wrote the canvas's key, on the slot's primary
// (Replicated).
//
// Every mutation the relay makes (publish, start epoch) is a Lua script that
// first checks the caller's lease term against the term key and refuses an
// older one, so a leader that stalled past its lease cannot touch the stream
// its successor writes. A gateway joins an epoch with a script too
// (JoinGroup): it reads the epoch and creates its consumer group in one
// step, so a group never starts at one epoch's position on another's
// stream.
package stream

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Keys names one canvas's Redis keys.
type Keys struct {
	Stream, Epoch string
	// Term is the newest sequencer lease term that touched Redis: every
	// relay script refuses an older one (see lua/fence.lua).
	Term string
	// Gateways holds the gateway instances' heartbeats (see Heartbeat).
	Gateways string
	// Ops holds each gateway's published dashboard figures.
	Ops string
	// Durable is written by Replicated, which then waits for replicas to
	// acknowledge that write (and so everything written before it).
	Durable string
	// Probe is written by Probe, the readiness check: a write in the
	// canvas's slot tells a read-only replica or a slot that is down from
	// a node that merely answers PING.
	Probe string
}

// KeysFor returns the keys of canvas name.
func KeysFor(name string) Keys {
	p := "pf:{" + name + "}:"
	return Keys{Stream: p + "stream", Epoch: p + "epoch", Term: p + "term", Gateways: p + "gateways", Ops: p + "ops", Durable: p + "durable", Probe: p + "probe"}
}

// groupPrefix marks the consumer groups gateways own (and may reap).
const groupPrefix = "gw:"

// GroupName is the consumer group of gateway instance id.
func GroupName(instance string) string { return groupPrefix + instance }

// GroupInstance returns the gateway instance whose group is group; ok is
// false for a group that is not a gateway's.
func GroupInstance(group string) (instance string, ok bool) {
	return strings.CutPrefix(group, groupPrefix)
}

// ID is the stream entry id of sequence number seq.
func ID(seq uint64) string { return strconv.FormatUint(seq, 10) + "-0" }

// ParseID returns the sequence number of an entry id made by ID.
func ParseID(id string) (uint64, error) {
	ms, rest, ok := strings.Cut(id, "-")
	if !ok || rest != "0" {
		return 0, fmt.Errorf("stream id %q is not <seq>-0", id)
	}
	seq, err := strconv.ParseUint(ms, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("stream id %q is not <seq>-0", id)
	}
	return seq, nil
}

// Field names of a stream entry. Short, because every entry carries them.
const (
	fEpoch       = "epoch"
	fID          = "id"
	fKind        = "kind"
	fGX          = "gx"
	fGY          = "gy"
	fColor       = "color"
	fVersion     = "ver"
	fCommittedAt = "cat"
	fPublishedAt = "pat"
	fTraceParent = "tp"
	fTraceState  = "ts"
)

// Entry is an event as stored in the stream, with the relay's publish time
// (one of the stage timestamps the load test reports).
type Entry struct {
	canvas.Event
	PublishedAt time.Time
}

// Values encodes e as XADD field/value pairs.
func (e Entry) Values() []any {
	v := []any{
		fEpoch, e.Epoch,
		fID, e.ID,
		fKind, string(e.Kind),
		fGX, e.GX,
		fGY, e.GY,
		fColor, e.Color.String(),
		fVersion, e.Version,
		fCommittedAt, e.CommittedAt.UnixNano(),
		fPublishedAt, e.PublishedAt.UnixNano(),
	}
	if e.TraceParent != "" {
		v = append(v, fTraceParent, e.TraceParent)
	}
	if e.TraceState != "" {
		v = append(v, fTraceState, e.TraceState)
	}
	return v
}

// Decode parses one stream message.
func Decode(m redis.XMessage) (Entry, error) {
	var e Entry
	seq, err := ParseID(m.ID)
	if err != nil {
		return e, err
	}
	e.Seq = seq
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	num := func(k string) (int64, error) {
		n, err := strconv.ParseInt(str(k), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stream entry %s: field %s: %w", m.ID, k, err)
		}
		return n, nil
	}
	e.Epoch, e.ID, e.Kind = str(fEpoch), str(fID), canvas.Kind(str(fKind))
	e.TraceParent, e.TraceState = str(fTraceParent), str(fTraceState)
	if e.Epoch == "" || e.ID == "" {
		return e, fmt.Errorf("stream entry %s lacks epoch or id", m.ID)
	}
	if e.Color, err = canvas.ParseColor(str(fColor)); err != nil {
		return e, fmt.Errorf("stream entry %s: %w", m.ID, err)
	}
	var gx, gy, cat, pat int64
	for _, f := range []struct {
		k string
		p *int64
	}{{fGX, &gx}, {fGY, &gy}, {fVersion, &e.Version}, {fCommittedAt, &cat}, {fPublishedAt, &pat}} {
		if *f.p, err = num(f.k); err != nil {
			return e, err
		}
	}
	e.GX, e.GY = int(gx), int(gy)
	e.CommittedAt, e.PublishedAt = time.Unix(0, cat), time.Unix(0, pat)
	return e, nil
}

// ErrEpochGone means the epoch key is missing or names another epoch: Redis
// lost its data (or another sequencer started an epoch). The publisher must
// start a new epoch; readers must resync.
var ErrEpochGone = errors.New("stream epoch is gone")

// ErrFenced means Redis has seen a newer lease term than the caller's: the
// caller was deposed and must stop mutating the stream.
var ErrFenced = errors.New("stream fenced: a newer sequencer term exists")

// TailMismatchError means the stream's last entry is not the one the publisher
// expected: a previous sequencer published entries it did not mark yet, or
// Redis lost the newest entries.
type TailMismatchError struct {
	Expected, Actual uint64
}

func (e *TailMismatchError) Error() string {
	return fmt.Sprintf("stream tail is %d, expected %d", e.Actual, e.Expected)
}

// The scripts (lua/*.lua); the relay's are each prefixed with the shared fence.
var (
	//go:embed lua/fence.lua
	fenceLua string
	//go:embed lua/publish.lua
	publishLua string
	//go:embed lua/start_epoch.lua
	startEpochLua string
	//go:embed lua/claim_term.lua
	claimTermLua string
	//go:embed lua/heartbeat.lua
	heartbeatLua string
	//go:embed lua/join_group.lua
	joinGroupLua string
	//go:embed lua/reap.lua
	reapLua string
	//go:embed lua/clock.lua
	clockLua string

	publishScript    = redis.NewScript(fenceLua + publishLua)
	startEpochScript = redis.NewScript(fenceLua + startEpochLua)
	claimTermScript  = redis.NewScript(fenceLua + claimTermLua)

	// The gateways' scripts: not the relay's mutations, so not fenced.
	heartbeatScript = redis.NewScript(heartbeatLua)
	joinGroupScript = redis.NewScript(joinGroupLua)
	reapScript      = redis.NewScript(reapLua)
	clockScript     = redis.NewScript(clockLua)
)

// Stream is one canvas's stream on one Redis.
type Stream struct {
	rdb    redis.UniversalClient
	keys   Keys
	maxLen int64
}

// New returns the stream of canvas name. maxLen bounds the stream (MAXLEN ~).
func New(rdb redis.UniversalClient, name string, maxLen int64) *Stream {
	return &Stream{rdb: rdb, keys: KeysFor(name), maxLen: maxLen}
}

// Keys returns the stream's Redis keys.
func (s *Stream) Keys() Keys { return s.keys }

// Publish appends entries (contiguous sequence numbers following expectTail)
// atomically, as the sequencer of lease term term. It returns ErrFenced,
// ErrEpochGone or a *TailMismatchError when the stream is not in the state
// the caller expects; nothing is written then.
func (s *Stream) Publish(ctx context.Context, term int64, epoch string, expectTail uint64, entries []Entry) error {
	argv := make([]any, 0, 4+len(entries)*22)
	argv = append(argv, term, epoch, expectTail, s.maxLen)
	for i, e := range entries {
		if e.Seq != expectTail+uint64(i)+1 {
			return fmt.Errorf("publish: entry %d has seq %d, want %d", i, e.Seq, expectTail+uint64(i)+1)
		}
		vals := e.Values()
		argv = append(argv, ID(e.Seq), len(vals))
		argv = append(argv, vals...)
	}
	err := publishScript.Run(ctx, s.rdb, s.scriptKeys(), argv...).Err()
	if err == nil {
		return nil
	}
	// Redis 7 prefixes script error replies without a code with "ERR ".
	msg := strings.TrimPrefix(err.Error(), "ERR ")
	switch {
	case strings.HasPrefix(msg, "FENCED"):
		return ErrFenced
	case strings.HasPrefix(msg, "EPOCHGONE"):
		return ErrEpochGone
	case strings.HasPrefix(msg, "TAIL "):
		actual, perr := strconv.ParseUint(strings.TrimPrefix(msg, "TAIL "), 10, 64)
		if perr != nil {
			return fmt.Errorf("publish: %w", err)
		}
		return &TailMismatchError{Expected: expectTail, Actual: actual}
	}
	return fmt.Errorf("publish %d entries: %w", len(entries), err)
}

func (s *Stream) scriptKeys() []string { return []string{s.keys.Stream, s.keys.Epoch, s.keys.Term} }

// runFenced runs a relay script that answers FENCED to an older term.
func (s *Stream) runFenced(ctx context.Context, sc *redis.Script, what string, argv ...any) error {
	err := sc.Run(ctx, s.rdb, s.scriptKeys(), argv...).Err()
	switch {
	case err == nil:
		return nil
	case strings.HasPrefix(strings.TrimPrefix(err.Error(), "ERR "), "FENCED"):
		return fmt.Errorf("%s: %w", what, ErrFenced)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// StartEpoch makes epoch the stream's epoch and empties the stream, in one
// script fenced by term, so no reader can see old entries under the new
// epoch and no deposed sequencer can wipe its successor's stream. When the
// epoch already is epoch it changes nothing: resuming an epoch change that
// reached Redis before is harmless.
func (s *Stream) StartEpoch(ctx context.Context, term int64, epoch string) error {
	return s.runFenced(ctx, startEpochScript, "start epoch "+epoch, term, epoch)
}

// Term is the newest sequencer term Redis has recorded (0: none).
func (s *Stream) Term(ctx context.Context) (int64, error) {
	t, err := s.rdb.Get(ctx, s.keys.Term).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read term: %w", err)
	}
	return t, nil
}

// ClaimTerm records term as the newest sequencer term; from then on Redis
// refuses every mutation by an older one. A new leader calls it before it
// reads the stream's tail.
func (s *Stream) ClaimTerm(ctx context.Context, term int64) error {
	return s.runFenced(ctx, claimTermScript, fmt.Sprintf("claim term %d", term), term)
}

// Tail returns the current epoch ("" if none) and the last sequence number.
func (s *Stream) Tail(ctx context.Context) (canvas.Position, error) {
	var epoch *redis.StringCmd
	var last *redis.XMessageSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.Get(ctx, s.keys.Epoch)
		last = p.XRevRangeN(ctx, s.keys.Stream, "+", "-", 1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return canvas.Position{}, fmt.Errorf("read stream tail: %w", err)
	}
	pos := canvas.Position{Epoch: epoch.Val()}
	if msgs := last.Val(); len(msgs) > 0 {
		if pos.Seq, err = ParseID(msgs[0].ID); err != nil {
			return pos, err
		}
	}
	return pos, nil
}

// Range returns up to count entries with seq in [from, to] (to 0: no bound).
func (s *Stream) Range(ctx context.Context, from, to uint64, count int64) ([]Entry, error) {
	end := "+"
	if to > 0 {
		end = ID(to)
	}
	msgs, err := s.rdb.XRangeN(ctx, s.keys.Stream, ID(from), end, count).Result()
	if err != nil {
		return nil, fmt.Errorf("read stream range %d..%s: %w", from, end, err)
	}
	out := make([]Entry, 0, len(msgs))
	for _, m := range msgs {
		e, err := Decode(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// ErrNotReplicated: fewer replicas than asked acknowledged the stream's
// writes within the timeout (Replicated). Nothing is lost on the primary;
// the caller asks again later.
var ErrNotReplicated = errors.New("not acknowledged by enough replicas")

// Replicated returns once at least replicas replicas of the canvas's
// primary acknowledge every write the primary applied before the call,
// or ErrNotReplicated after timeout. It writes Keys.Durable and runs WAIT
// on the same connection: WAIT counts acknowledgements of that
// connection's last write, and replication is one ordered stream, so a
// replica that has this write has every earlier one, whoever made it
// (the relay's XADDs ran on other pooled connections). On a Cluster it
// runs on the primary of the canvas's slot.
func (s *Stream) Replicated(ctx context.Context, replicas int, timeout time.Duration) error {
	var pipe redis.Pipeliner
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		primary, err := c.MasterForKey(ctx, s.keys.Durable)
		if err != nil {
			return fmt.Errorf("replication barrier: the canvas's primary: %w", err)
		}
		pipe = primary.Pipeline()
	default:
		pipe = s.rdb.Pipeline()
	}
	pipe.Set(ctx, s.keys.Durable, time.Now().UnixMilli(), 10*time.Minute)
	acked := pipe.Do(ctx, "WAIT", replicas, timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("replication barrier: %w", err)
	}
	n, err := acked.Int()
	if err != nil {
		return fmt.Errorf("replication barrier: WAIT: %w", err)
	}
	if n < replicas {
		return fmt.Errorf("%d of %d replicas acknowledged within %s: %w", n, replicas, timeout, ErrNotReplicated)
	}
	return nil
}

// Len returns the number of entries in the stream.
func (s *Stream) Len(ctx context.Context) (int64, error) {
	n, err := s.rdb.XLen(ctx, s.keys.Stream).Result()
	if err != nil {
		return 0, fmt.Errorf("stream length: %w", err)
	}
	return n, nil
}

// Heartbeat records that gateway instance is alive, at the Redis server's
// clock, in Keys.Gateways, and returns that time.
func (s *Stream) Heartbeat(ctx context.Context, instance string) (time.Time, error) {
	ms, err := heartbeatScript.Run(ctx, s.rdb, []string{s.keys.Gateways}, instance).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("heartbeat: %w", err)
	}
	return time.UnixMilli(ms), nil
}

// Reap forgets gateway instance's heartbeat and destroys its consumer
// group (group "": the heartbeat only) if the heartbeat is missing or
// older than ttl by the Redis server's clock at this moment, in one script
// (lua/reap.lua). alive is true when the instance beat within ttl: nothing
// was changed. destroyed is true when the group existed and is gone.
// A reaper decides from an earlier read of the heartbeats; the script
// judges again, so an instance that beat since keeps its group.
func (s *Stream) Reap(ctx context.Context, instance, group string, ttl time.Duration) (alive, destroyed bool, err error) {
	n, err := reapScript.Run(ctx, s.rdb, []string{s.keys.Gateways, s.keys.Stream}, instance, group, ttl.Milliseconds()).Int64()
	if err != nil {
		return false, false, fmt.Errorf("reap %s: %w", instance, err)
	}
	return n < 0, n > 0, nil
}

// Joined is what JoinGroup did.
type Joined struct {
	// Epoch is the epoch whose stream the group is on ("" when Redis has
	// no epoch yet: the relay has not started one).
	Epoch string
	// Outcome is JoinCreated, JoinKept or JoinReset.
	Outcome string
}

// JoinGroup outcomes.
const (
	// JoinCreated: the group did not exist; it starts after the caller's
	// position when that is in Epoch, else at the stream's start.
	JoinCreated = "created"
	// JoinKept: the group existed and was left as it was: the caller holds
	// no position (a restarted instance), or one in Epoch.
	JoinKept = "kept"
	// JoinReset: the group existed on the stream of an epoch other than
	// the caller's position's; it was set back to the stream's start.
	JoinReset = "reset"
)

// JoinGroup makes sure consumer group group exists on the stream of the
// current epoch, for a reader that holds position at (held false: none).
// It reads the epoch and creates (or resets) the group in one script
// (lua/join_group.lua), so the group can never carry a last-delivered id
// of one epoch on another epoch's stream: an epoch started between a
// separate read of the epoch and XGROUP CREATE would leave the group
// skipping the new epoch's first entries, with nothing to show a gap.
// Both keys share the canvas's hash tag, so the script runs on a cluster.
func (s *Stream) JoinGroup(ctx context.Context, group string, at canvas.Position, held bool) (Joined, error) {
	h, start := "0", "0"
	if held {
		h = "1"
		if at.Seq > 0 {
			start = ID(at.Seq)
		}
	}
	res, err := joinGroupScript.Run(ctx, s.rdb, []string{s.keys.Stream, s.keys.Epoch}, group, h, at.Epoch, start).StringSlice()
	if err != nil {
		return Joined{}, fmt.Errorf("join group %s: %w", group, err)
	}
	if len(res) != 2 {
		return Joined{}, fmt.Errorf("join group %s: script answered %q", group, res)
	}
	return Joined{Epoch: res[0], Outcome: res[1]}, nil
}

// Clock is the time of the Redis server that holds the canvas's keys, the
// clock Heartbeat stamps by (see lua/clock.lua for why not TIME).
func (s *Stream) Clock(ctx context.Context) (time.Time, error) {
	ms, err := clockScript.Run(ctx, s.rdb, []string{s.keys.Gateways}).Int64()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis clock: %w", err)
	}
	return time.UnixMilli(ms), nil
}
