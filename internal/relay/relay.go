// Package relay moves committed events from the MongoDB outbox into the Redis
// stream. It is the canvas's single sequencer: only the relay holding the
// lease publishes, giving each event the next contiguous sequence number.
//
// Lifecycle: Run loops until its context ends. As a standby it retries the
// lease every LeaseTTL/3. As the leader it first syncs (reconciles the stream
// with the outbox, see sync), then drains pending events in bounded claims,
// woken by the outbox change stream with a slow poll as the safety net, and
// renews the lease. It marks a claim it appended together with the next
// claim, in one store transaction, or alone after MarkDelay (see
// Options.MarkDelay): the XADD is never delayed, only the mark. Redis or store errors back off with jitter and never lose
// an event: an event leaves the pending state only in the same transaction
// that records the sequence it was published at. On shutdown it finishes the
// claim in flight and releases the lease so a standby takes over at once.
//
// Three rules keep the stream's numbers honest under any crash or stall:
//
//   - A claim's numbers are recorded in the store before the XADD, and a
//     successor finishes an open claim with exactly those numbers: in one
//     epoch a sequence number never names two events, even when Redis loses
//     entries that were already delivered.
//   - Every lease acquisition that is not a renewal starts a new term, and
//     every Redis mutation is a script that refuses an older term: a leader
//     that stalls past its lease cannot touch its successor's stream.
//   - An epoch change is recorded in the store first and resumed, never
//     restarted: a failing step is retried into the same epoch, and the
//     republish window is requeued in bounded transactions.
package relay

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/backoff"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/option"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/stream"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// Outbox is what the relay needs of the store.
type Outbox interface {
	AcquireLease(ctx context.Context, holder string, ttl time.Duration) (store.Lease, bool, error)
	ReleaseLease(ctx context.Context, holder string) error
	AdvanceTerm(ctx context.Context, holder string, term, seen int64) (store.Lease, error)
	Claim(ctx context.Context, holder string, term int64, at canvas.Position, limit int) (store.Claim, []canvas.Event, error)
	ClaimEvents(ctx context.Context, c store.Claim) ([]canvas.Event, error)
	Published(ctx context.Context, epoch string, from, to uint64) ([]canvas.Event, error)
	MarkPublished(ctx context.Context, holder string, term int64, from canvas.Position, c store.Claim, at time.Time) error
	MarkAndClaim(ctx context.Context, holder string, term int64, from canvas.Position, c store.Claim, at time.Time, limit int) (store.Claim, []canvas.Event, error)
	BeginEpoch(ctx context.Context, holder string, term int64, candidate string, republishSince time.Time) (string, error)
	Requeue(ctx context.Context, holder string, term int64, limit int) (int, bool, error)
	CommitEpoch(ctx context.Context, holder string, term int64, epoch string) error
	WatchOutbox(ctx context.Context) (<-chan struct{}, <-chan error)
}

// Stream is what the relay needs of the Redis stream. Every mutation carries
// the lease term, which Redis checks (see package stream).
type Stream interface {
	ClaimTerm(ctx context.Context, term int64) error
	Term(ctx context.Context) (int64, error)
	Publish(ctx context.Context, term int64, epoch string, expectTail uint64, entries []stream.Entry) error
	StartEpoch(ctx context.Context, term int64, epoch string) error
	Tail(ctx context.Context) (canvas.Position, error)
	Range(ctx context.Context, from, to uint64, count int64) ([]stream.Entry, error)
	Replicated(ctx context.Context, replicas int, timeout time.Duration) error
}

// Options configure a Relay.
type Options struct {
	// Holder identifies this relay in the lease. Required, unique per process.
	Holder string
	// LeaseTTL is how long a lease lasts unrenewed: a crashed leader's
	// standby takes over after at most this long. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// BatchSize bounds the events appended per XADD script call. Default 512.
	BatchSize int
	// ClaimLimit bounds the events claimed (and so marked, and recorded in
	// one batch document) per store transaction, and the events requeued
	// per transaction into a new epoch: the relay's memory and transaction
	// size do not grow with the backlog. Default 4096.
	ClaimLimit int
	// Linger is how long the relay waits after publishing a batch of at
	// least lingerAfter events (a sign of load) before it
	// claims the next one, so that under load it publishes fewer, larger
	// batches: each costs a store transaction (two when its mark is not
	// folded, see MarkDelay), and on the embedded store those take turns
	// with the API's writes. Default 0 (claim at once).
	Linger time.Duration
	// MarkDelay is how long the relay may defer marking a claim it has
	// appended to the stream. The XADD is never delayed, only the mark:
	// when new events arrive within MarkDelay (the outbox change stream
	// wakes the relay), the mark is folded into the claim of those events,
	// one store transaction (MarkAndClaim) instead of two; when none
	// arrive, the claim is marked alone once MarkDelay has passed. Meanwhile
	// the claim stays recorded in the sequencer, so a crash loses nothing:
	// a successor (or this relay after an error) finishes it with its
	// numbers. A claim that shows load (lingerAfter events or more, or a
	// full ClaimLimit) is marked with the next claim at once. Default
	// DefaultMarkDelay; negative (MarkAtOnce) marks every claim right after
	// its XADD.
	// At most MaxMarkDelay.
	MarkDelay time.Duration
	// PollInterval is the safety-net poll when no change-stream wake-up comes.
	// Default 1s.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after errors
	// (exponential, with full jitter). Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// WaitReplicas, when positive, is how many Redis replicas must hold a
	// claim's entries before the store marks them published (Redis's
	// WAIT, once per mark, off the XADD path: gateways read the entries
	// at once). An entry a failover loses is then still in an open claim,
	// which the next leader appends again under the same numbers: clients
	// keep their epoch instead of resyncing. While fewer replicas answer
	// within WaitTimeout, marks and so new claims wait (the relay retries
	// with backoff; nothing is lost, the outbox grows). Default 0: mark
	// after the primary alone has the entries.
	WaitReplicas int
	// WaitTimeout bounds each WAIT. Default DefaultWaitTimeout.
	WaitTimeout time.Duration
	// RepublishWindow is how far back published events are republished into a
	// new epoch after Redis lost the stream. Default 10m.
	RepublishWindow time.Duration
	// Failpoint, when set, is called at named places. For tests:
	//   - "relay:after-xadd": a non-nil error stops the relay right there,
	//     as if the process died between the XADD and marking the outbox;
	//   - "relay:before-mark": a non-nil error stops the relay just before
	//     it marks a claim it appended (alone or folded into the next
	//     claim), as if the process died while the mark was deferred;
	//   - "relay:before-epoch-redis": called just before an epoch change
	//     touches Redis (a test stalls a leader there);
	//   - "relay:forget-claim" and "relay:epoch-redis-first": a non-nil
	//     error switches a fix off and restores an old defect (a successor
	//     ignores the open claim's recorded numbers; an epoch change starts
	//     in Redis with a fresh epoch before the store records it), so the
	//     tests and drills can show they would catch it;
	//   - "relay:trust-stream-tail": a non-nil error restores the defect
	//     of a relay that believes a stream shorter than what it published
	//     (a replica promoted without the newest entries) and numbers on
	//     after its tail, handing out again numbers clients already hold
	//     (the failover drill sentinel-lagging-replica's teeth);
	//   - "relay:mark-unreplicated": a non-nil error marks without
	//     waiting for WaitReplicas, as if the setting were off.
	Failpoint func(name string) error
	// Logger. Default slog.Default().
	Logger *slog.Logger
	// Canary, when set, is called by the leader every CanaryInterval to put
	// a canary event in the outbox; gateways watch for it (readiness).
	Canary         func(ctx context.Context) error
	CanaryInterval time.Duration
	// Tracer, when set, gives each published event a producer span, a child
	// of the event's stored trace context; the entry then carries the
	// span's context on to the gateways. Destination names the stream in
	// span attributes; Propagator reads and writes trace contexts (default
	// W3C traceparent).
	Tracer      trace.TracerProvider
	Propagator  propagation.TextMapPropagator
	Destination string
	// Numbered, when set, is called with each chunk of entries just before
	// the relay appends it to the stream, from the relay's goroutine: a
	// gateway in the same process broadcasts them at once
	// (gateway.Gateway.Offer) instead of after the XADD's round trip and its
	// own read of the stream. Their numbers are already recorded in the
	// store (the claim), so in this epoch they name these events whatever
	// becomes of this XADD: a retry or a successor appends the same
	// entries at the same numbers (see sync), or a new epoch resyncs every
	// client. It must not block.
	Numbered func(entries []stream.Entry)
}

// lingerAfter is the batch size from which the relay lingers: below it the
// load is light, and waiting would only add latency. From it on, the relay
// also folds the batch's mark into the next claim at once, without waiting
// for a wake-up: more is surely pending.
const lingerAfter = 16

// ErrFailpoint is returned by Run when a failpoint stopped it.
var ErrFailpoint = errors.New("relay stopped by failpoint")

// Relay is one relay process's sequencer loop.
type Relay struct {
	out    Outbox
	st     Stream
	opts   Options
	tracer trace.Tracer // nil: tracing off

	mu     sync.Mutex
	status Status

	// sleep waits between outbox watches (backoff.Sleep; a test records
	// the delays instead).
	sleep func(ctx context.Context, d time.Duration)

	// behind is how far behind the sequencer the failpoint
	// relay:trust-stream-tail numbers (the short stream's tail it
	// believed); 0 unless it is armed. Run's goroutine alone touches it.
	behind uint64
}

// Status is what /api/health shows of the relay.
type Status struct {
	State     string `json:"state"` // "standby", "leader", "backoff", "stopped"
	Holder    string `json:"holder"`
	Leader    string `json:"leader,omitempty"`
	Epoch     string `json:"epoch,omitempty"`
	Seq       uint64 `json:"seq"`
	Published int64  `json:"published"`
	Batches   int64  `json:"batches"`
	// Transactions counts the store transactions the relay ran to claim
	// and mark (claims that found nothing included; a mark folded into the
	// next claim is one): Transactions/Batches is the store's cost per
	// batch, 2 or more when every claim is marked alone.
	Transactions int64 `json:"transactions"`
	// Folded counts the marks folded into the next claim.
	Folded       int64 `json:"folded"`
	EpochChanges int64 `json:"epochChanges"`
	Reconciled   int64 `json:"reconciled"` // events found in the stream and marked, not republished
	// NotReplicated counts marks held back because fewer than
	// WaitReplicas replicas acknowledged the entries in time.
	NotReplicated int64     `json:"notReplicated"`
	LastPublishAt time.Time `json:"lastPublishAt,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorAt   time.Time `json:"lastErrorAt,omitzero"`
}

// Defaults of the options that pixelflow's settings set (config takes its
// defaults from here: one default per setting).
const (
	DefaultLeaseTTL       = 5 * time.Second
	DefaultCanaryInterval = 2 * time.Second
	DefaultMarkDelay      = 50 * time.Millisecond
	DefaultWaitTimeout    = 500 * time.Millisecond
)

// MarkAtOnce, as MarkDelay, marks every claim right after its XADD.
const MarkAtOnce time.Duration = -1

// MaxMarkDelay bounds MarkDelay: a deferred mark is work a successor would
// have to redo, and figures (Published, the sequencer's position) lag the
// stream by up to MarkDelay.
const MaxMarkDelay = time.Second

// MaxWaitTimeout bounds WaitTimeout: WAIT blocks its connection, and a
// wait longer than the Redis client's read timeout (3 s) would fail as a
// timeout of the connection instead of answering how many replicas
// acknowledged.
const MaxWaitTimeout = 2 * time.Second

// Validate refuses options the relay cannot run with (zero or negative
// durations stand for their defaults). New calls it; so does config.Parse,
// before anything opens.
func (o Options) Validate() error {
	c := option.Checker{Component: "relay"}
	c.Check(o.Holder != "", "Holder", `""`, "is required (unique per process)")
	c.Check(o.MarkDelay <= MaxMarkDelay, "MarkDelay", o.MarkDelay, "must be at most %s (negative marks at once)", MaxMarkDelay)
	c.Check(o.WaitReplicas >= 0, "WaitReplicas", o.WaitReplicas, "must be 0 (off) or more")
	c.Check(o.WaitTimeout <= MaxWaitTimeout, "WaitTimeout", o.WaitTimeout, "must be at most %s (below the Redis client's read timeout)", MaxWaitTimeout)
	return c.Err()
}

// New validates opts and returns a relay.
func New(out Outbox, st Stream, opts Options) (*Relay, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.ClaimLimit <= 0 {
		opts.ClaimLimit = 4096
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(2*time.Second, opts.MinBackoff)
	}
	if opts.RepublishWindow <= 0 {
		opts.RepublishWindow = 10 * time.Minute
	}
	if opts.MarkDelay == 0 {
		opts.MarkDelay = DefaultMarkDelay
	}
	if opts.WaitTimeout <= 0 {
		opts.WaitTimeout = DefaultWaitTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	if opts.Canary != nil && opts.CanaryInterval <= 0 {
		opts.CanaryInterval = DefaultCanaryInterval
	}
	r := &Relay{out: out, st: st, opts: opts, sleep: backoff.Sleep}
	if opts.Tracer != nil {
		r.tracer = opts.Tracer.Tracer("github.com/pixelflow/pixelflow/internal/relay")
	}
	r.status = Status{State: "standby", Holder: opts.Holder}
	return r, nil
}

// Status returns a snapshot of the relay's state.
func (r *Relay) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

func (r *Relay) update(f func(*Status)) {
	r.mu.Lock()
	f(&r.status)
	r.mu.Unlock()
}

func (r *Relay) fail(err error) {
	r.update(func(s *Status) { s.LastError, s.LastErrorAt = err.Error(), time.Now() })
}

// Run is the relay loop. It returns nil when ctx ends, or ErrFailpoint.
func (r *Relay) Run(ctx context.Context) error {
	defer r.update(func(s *Status) { s.State = "stopped" })
	wake := r.watch(ctx)
	var bo backoff.Backoff
	for ctx.Err() == nil {
		lease, ok, err := r.out.AcquireLease(ctx, r.opts.Holder, r.opts.LeaseTTL)
		if err != nil {
			r.fail(err)
			r.opts.Logger.Warn("relay: acquire lease", "err", err)
			backoff.Sleep(ctx, bo.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
			continue
		}
		if !ok {
			r.update(func(s *Status) { s.State, s.Leader = "standby", lease.Holder })
			backoff.Sleep(ctx, r.opts.LeaseTTL/3)
			continue
		}
		bo.Reset()
		r.opts.Logger.Info("relay: leading", "holder", r.opts.Holder, "epoch", lease.Epoch, "seq", lease.Seq)
		err = r.lead(ctx, lease, wake)
		if errors.Is(err, ErrFailpoint) {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		r.fail(err)
		r.opts.Logger.Warn("relay: lost leadership", "err", err)
	}
	return nil
}

// watch merges change-stream wake-ups into one channel, restarting the watch
// after failures (the poll covers the gap).
func (r *Relay) watch(ctx context.Context) <-chan struct{} {
	merged := make(chan struct{}, 1)
	go func() {
		var b backoff.Backoff
		for ctx.Err() == nil {
			wake, errc := r.out.WatchOutbox(ctx)
			func() {
				for {
					select {
					case <-ctx.Done():
						return
					case _, ok := <-wake:
						if !ok {
							return
						}
						// The stream works: a later failure starts
						// over at MinBackoff, not where the last
						// outage left off (hours ago, maybe at
						// MaxBackoff, with inserts waiting for the
						// poll meanwhile).
						b.Reset()
						select {
						case merged <- struct{}{}:
						default:
						}
					case err, ok := <-errc:
						if ok && err != nil {
							r.opts.Logger.Warn("relay: outbox change stream", "err", err)
						}
						return
					}
				}
			}()
			r.sleep(ctx, b.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
		}
	}()
	return merged
}

// appended is a claim the relay appended to the stream and has not marked
// yet: its numbers are recorded in the sequencer as the open claim, so a
// crash meanwhile loses nothing (see sync).
type appended struct {
	claim store.Claim
	at    time.Time // the entries' PublishedAt, recorded by the mark
	// markBy is when the claim is marked alone if nothing new arrived.
	markBy time.Time
	// load: the claim was large (lingerAfter or more, or ClaimLimit), so
	// more is surely pending: mark it with the next claim at once.
	load bool
}

// lead publishes while this relay holds the lease. It returns when the lease
// is lost (or cannot be renewed in time), ctx ends, or a failpoint fires.
//
// pos is the marked position (the sequencer's); open is the claim appended
// after it and not marked yet, or nil. A claim is marked when the next
// claim is made (folded: one transaction, woken by new events or at once
// under load), when MarkDelay passes with nothing new, or on shutdown.
// Every error drops open: the sequencer still records it as the open
// claim, and sync finishes it with its numbers.
func (r *Relay) lead(ctx context.Context, lease store.Lease, wake <-chan struct{}) error {
	pos, term := lease.Position, lease.Term
	var open *appended
	fold := false // mark open together with the next claim now
	renewAt := time.Now().Add(r.opts.LeaseTTL / 3)
	expires := lease.ExpiresAt
	synced := false
	nextCanary := time.Now()
	var b backoff.Backoff
	r.update(func(s *Status) { s.State, s.Leader = "leader", r.opts.Holder })
	defer func() {
		// Release so a standby need not wait for the lease to lapse; a
		// failpoint "crash" must not release.
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if err := r.out.ReleaseLease(rctx, r.opts.Holder); err != nil {
				r.opts.Logger.Warn("relay: release lease", "err", err)
			}
			cancel()
		}
	}()
	for {
		if ctx.Err() != nil {
			if open != nil {
				// Shutdown marks the claim it deferred rather than leave it
				// to a successor.
				if _, err := r.markOpen(ctx, term, pos, open); err != nil {
					r.opts.Logger.Warn("relay: mark on shutdown; a successor finishes the claim", "err", err)
				}
			}
			return ctx.Err()
		}
		if time.Now().After(renewAt) {
			l, ok, err := r.out.AcquireLease(ctx, r.opts.Holder, r.opts.LeaseTTL)
			switch {
			case err != nil && time.Now().After(expires):
				return fmt.Errorf("renew lease: %w", err)
			case err != nil:
				r.fail(err)
				backoff.Sleep(ctx, b.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
				continue
			case !ok:
				return fmt.Errorf("lease taken by %s: %w", l.Holder, store.ErrLeaseLost)
			}
			// The sequencer's position is the marked one: a deferred
			// claim is still recorded there as the open claim.
			if l.Term != term || (synced && l.Position != pos) {
				return fmt.Errorf("sequencer moved to %s (term %d) while we held %s (term %d): %w", l.Position, l.Term, pos, term, store.ErrLeaseLost)
			}
			if open != nil && (l.Claim == nil || l.Claim.ID != open.claim.ID) {
				return fmt.Errorf("the sequencer's open claim is not the one we appended (%s): %w", open.claim.ID, store.ErrLeaseLost)
			}
			expires, renewAt = l.ExpiresAt, time.Now().Add(r.opts.LeaseTTL/3)
		}
		if r.opts.Canary != nil && !time.Now().Before(nextCanary) {
			nextCanary = time.Now().Add(r.opts.CanaryInterval)
			if err := r.opts.Canary(ctx); err != nil && ctx.Err() == nil {
				r.opts.Logger.Warn("relay: canary", "err", err)
			}
		}
		var err error
		if !synced {
			open, fold = nil, false
			pos, err = r.sync(ctx, term)
			if err == nil {
				synced = true
				r.update(func(s *Status) { s.Epoch, s.Seq, s.State = pos.Epoch, pos.Seq, "leader" })
			}
		}
		var fresh *appended // the claim appended in this step
		if err == nil {
			switch {
			case open == nil:
				fresh, err = r.publishClaim(ctx, term, pos)
				open = fresh
			case fold:
				pos, fresh, err = r.markAndPublish(ctx, term, pos, open)
				open = fresh
			case !time.Now().Before(open.markBy):
				pos, err = r.markOpen(ctx, term, pos, open)
				open = nil
			}
			if fresh != nil && err == nil && r.opts.MarkDelay < 0 {
				pos, err = r.markOpen(ctx, term, pos, fresh)
				open = nil
			}
		}
		fold = false
		switch {
		case errors.Is(err, ErrFailpoint), errors.Is(err, store.ErrLeaseLost):
			return err
		case errors.Is(err, stream.ErrFenced):
			return fmt.Errorf("%w: %w", store.ErrLeaseLost, err)
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			synced, open = false, nil
			r.fail(err)
			r.update(func(s *Status) { s.State = "backoff" })
			r.opts.Logger.Warn("relay: publish", "err", err)
			backoff.Sleep(ctx, b.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
			continue
		}
		b.Reset()
		if fresh != nil && (open == nil || fresh.load) {
			// More may have arrived while publishing (marked at once), or
			// surely has (a large claim); after Linger, more still.
			if r.opts.Linger > 0 && len(fresh.claim.IDs) >= lingerAfter {
				backoff.Sleep(ctx, r.opts.Linger)
			}
			fold = open != nil
			continue
		}
		wait := min(time.Until(renewAt), r.opts.PollInterval)
		if r.opts.Canary != nil {
			wait = min(wait, time.Until(nextCanary))
		}
		if open != nil {
			wait = min(wait, time.Until(open.markBy))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
		case <-wake:
			fold = open != nil
		case <-t.C:
		}
		t.Stop()
	}
}

// failpoint reports whether the test failpoint name is armed.
func (r *Relay) failpoint(name string) error {
	if r.opts.Failpoint == nil {
		return nil
	}
	return r.opts.Failpoint(name)
}

// publishClaim claims up to ClaimLimit pending events (their numbers are
// recorded in the store first) and appends them after pos in chunks of
// BatchSize. It returns the claim, appended and not marked, or nil when
// nothing was pending.
func (r *Relay) publishClaim(ctx context.Context, term int64, pos canvas.Position) (*appended, error) {
	c, events, err := r.out.Claim(ctx, r.opts.Holder, term, pos, r.opts.ClaimLimit)
	r.update(func(s *Status) { s.Transactions++ })
	if err != nil || len(events) == 0 {
		return nil, err
	}
	return r.appendClaim(ctx, term, pos, c, events)
}

// markAndPublish marks open (appended after pos) and claims the next
// pending events in one transaction, then appends those. It returns the
// new marked position and the new claim, appended and not marked, or nil
// when nothing more was pending.
func (r *Relay) markAndPublish(ctx context.Context, term int64, pos canvas.Position, open *appended) (canvas.Position, *appended, error) {
	if err := r.failpoint("relay:before-mark"); err != nil {
		return pos, nil, fmt.Errorf("%w: %v", ErrFailpoint, err)
	}
	// Begun, the mark and the append of what it claims complete even if
	// ctx is cancelled meanwhile: shutdown waits for them.
	bctx, cancel := finishing(ctx)
	defer cancel()
	if err := r.replicated(bctx, len(open.claim.IDs)); err != nil {
		return pos, nil, err
	}
	c, events, err := r.out.MarkAndClaim(bctx, r.opts.Holder, term, pos, open.claim, open.at, r.opts.ClaimLimit)
	r.update(func(s *Status) { s.Transactions++ })
	if err != nil {
		return pos, nil, fmt.Errorf("mark %d events published and claim: %w", len(open.claim.IDs), err)
	}
	pos = r.marked(pos, open, true)
	if len(events) == 0 {
		return pos, nil, nil
	}
	next, err := r.appendClaim(bctx, term, pos, c, events)
	return pos, next, err
}

// markOpen marks open, appended after pos, alone. It returns the new marked
// position.
func (r *Relay) markOpen(ctx context.Context, term int64, pos canvas.Position, open *appended) (canvas.Position, error) {
	if err := r.failpoint("relay:before-mark"); err != nil {
		return pos, fmt.Errorf("%w: %v", ErrFailpoint, err)
	}
	bctx, cancel := finishing(ctx)
	defer cancel()
	if err := r.replicated(bctx, len(open.claim.IDs)); err != nil {
		return pos, err
	}
	err := r.out.MarkPublished(bctx, r.opts.Holder, term, pos, open.claim, open.at)
	r.update(func(s *Status) { s.Transactions++ })
	if err != nil {
		return pos, fmt.Errorf("mark %d events published: %w", len(open.claim.IDs), err)
	}
	return r.marked(pos, open, false), nil
}

// replicated returns once WaitReplicas replicas hold everything appended
// so far (at once when WaitReplicas is 0), or an error that keeps the n
// events of the claim unmarked: the claim stays open, and the relay's
// next attempt finds its entries in the stream and asks again.
func (r *Relay) replicated(ctx context.Context, n int) error {
	if r.opts.WaitReplicas <= 0 || r.failpoint("relay:mark-unreplicated") != nil {
		return nil
	}
	err := r.st.Replicated(ctx, r.opts.WaitReplicas, r.opts.WaitTimeout)
	if errors.Is(err, stream.ErrNotReplicated) {
		r.update(func(s *Status) { s.NotReplicated++ })
	}
	if err != nil {
		return fmt.Errorf("hold the mark of %d events until Redis replicas have them (REDIS_WAIT_REPLICAS=%d): %w", n, r.opts.WaitReplicas, err)
	}
	return nil
}

// marked records in the status that open was marked, and returns the
// position after it.
func (r *Relay) marked(pos canvas.Position, open *appended, folded bool) canvas.Position {
	next := canvas.Position{Epoch: pos.Epoch, Seq: open.claim.Last()}
	r.update(func(s *Status) {
		s.Seq, s.Published, s.Batches, s.LastPublishAt = next.Seq, s.Published+int64(len(open.claim.IDs)), s.Batches+1, open.at
		if folded {
			s.Folded++
		}
	})
	return next
}

// finishing is the context of store and Redis work that, once begun, runs
// to its end even when ctx is cancelled (shutdown waits for it), bounded.
func finishing(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// appendClaim appends claim c's events after pos.
func (r *Relay) appendClaim(ctx context.Context, term int64, pos canvas.Position, c store.Claim, events []canvas.Event) (*appended, error) {
	// The claim in flight is appended even if ctx is cancelled meanwhile:
	// shutdown waits for it, then marks it, rather than leave it open.
	bctx, cancel := finishing(ctx)
	defer cancel()
	now := time.Now()
	if err := r.append(bctx, term, pos.Epoch, pos.Seq, events, now, true); err != nil {
		return nil, err
	}
	return &appended{claim: c, at: now, markBy: now.Add(r.opts.MarkDelay),
		load: len(events) >= lingerAfter || len(events) >= r.opts.ClaimLimit}, nil
}

// append publishes events at tail+1, tail+2, … in epoch, in chunks of
// BatchSize. traced gives each event a producer span (a first publication;
// a repair republishes without new spans).
func (r *Relay) append(ctx context.Context, term int64, epoch string, tail uint64, events []canvas.Event, now time.Time, traced bool) error {
	for start := 0; start < len(events); start += r.opts.BatchSize {
		chunk := events[start:min(start+r.opts.BatchSize, len(events))]
		at := tail - r.behind + uint64(start)
		entries := make([]stream.Entry, len(chunk))
		var spans []trace.Span
		for i, ev := range chunk {
			ev.Epoch, ev.Seq = epoch, at+uint64(i)+1
			if traced {
				if sp := r.publishSpan(ctx, &ev); sp != nil {
					spans = append(spans, sp)
				}
			}
			entries[i] = stream.Entry{Event: ev, PublishedAt: now}
		}
		if r.opts.Numbered != nil {
			r.opts.Numbered(entries)
		}
		if err := r.failpoint("relay:before-xadd"); err != nil {
			endSpans(spans, err)
			return fmt.Errorf("%w: %v", ErrFailpoint, err)
		}
		err := r.st.Publish(ctx, term, epoch, at, entries)
		endSpans(spans, err)
		if err != nil {
			return fmt.Errorf("publish %d events after %d: %w", len(entries), at, err)
		}
		if err := r.failpoint("relay:after-xadd"); err != nil {
			return fmt.Errorf("%w: %v", ErrFailpoint, err)
		}
	}
	return nil
}

// termBehindRedis handles a fenced ClaimTerm (err) by a relay that holds
// the store's lease of term: Redis has seen a newer term than any the
// store remembers, so the store began again (reset, restored from a
// backup) while Redis kept its history. The store's lease decides who
// leads, so the term moves past Redis's (store.AdvanceTerm) and the lead
// starts over with it; before, every attempt was fenced and the outbox
// never drained. Any other error is returned as it is.
func (r *Relay) termBehindRedis(ctx context.Context, term int64, err error) error {
	if !errors.Is(err, stream.ErrFenced) || r.failpoint("relay:keep-fenced-term") != nil {
		return err
	}
	seen, terr := r.st.Term(ctx)
	if terr != nil || seen <= term {
		return err
	}
	l, aerr := r.out.AdvanceTerm(ctx, r.opts.Holder, term, seen)
	if aerr != nil {
		return fmt.Errorf("%w; advancing the lease term past it: %w", err, aerr)
	}
	r.opts.Logger.Warn("relay: Redis has seen a newer lease term than the store; the store began again (reset or restored) while Redis kept its history, so this lease's term moves past it",
		"term", term, "redis_term", seen, "new_term", l.Term)
	return fmt.Errorf("term %d advanced to %d past Redis's %d: %w", term, l.Term, seen, store.ErrLeaseLost)
}

// sync reconciles the stream with the sequencer's state before publishing.
// It reads that state afresh (a renewal of the lease), first records the
// lease term in Redis so a deposed leader can no longer touch the stream,
// then:
//
//   - An epoch change is in progress: finish it (same epoch).
//   - Redis has no epoch, or another one: Redis lost its data (or this is the
//     first start). Start a new epoch.
//   - The stream holds numbers past everything ever handed out (the marked
//     position plus the open claim): it is not this sequencer's stream. New
//     epoch.
//   - The tail is behind the marked position: Redis lost its newest entries
//     (an fsync window, an async failover). Republish them with their
//     numbers from the batch records, or start a new epoch if the outbox no
//     longer has them (always so on the embedded store, which prunes).
//   - An open claim: a previous leader died between XADD and marking. The
//     claim's entries the stream holds are checked against the record; the
//     rest are appended with the numbers the claim recorded; then the claim
//     is marked. A number handed out never names another event in its epoch.
func (r *Relay) sync(ctx context.Context, term int64) (canvas.Position, error) {
	l, ok, err := r.out.AcquireLease(ctx, r.opts.Holder, r.opts.LeaseTTL)
	switch {
	case err != nil:
		return canvas.Position{}, err
	case !ok || l.Term != term:
		return canvas.Position{}, fmt.Errorf("lease held by %s (term %d): %w", l.Holder, l.Term, store.ErrLeaseLost)
	}
	if err := r.st.ClaimTerm(ctx, term); err != nil {
		return l.Position, r.termBehindRedis(ctx, term, err)
	}
	if l.NextEpoch != "" {
		return r.newEpoch(ctx, term, l.Position, "resuming the epoch change in progress")
	}
	pos, claim := l.Position, l.Claim
	if claim != nil && r.failpoint("relay:forget-claim") != nil {
		claim = nil // the old defect: the open claim's numbers are not honoured
	}
	tail, err := r.st.Tail(ctx)
	if err != nil {
		return pos, err
	}
	r.behind = 0
	handedOut := pos.Seq
	if claim != nil {
		handedOut = claim.Last()
	}
	switch {
	case tail == (canvas.Position{}) && pos == (canvas.Position{}) && claim == nil:
		// Nothing was ever published here, in Redis or in the store: a
		// canvas's first start, which needs its first epoch. No client
		// can have seen another one, so this is news, not trouble.
		return r.changeEpoch(ctx, term, pos, "first start: neither the stream nor the sequencer has an epoch", slog.LevelInfo)
	case tail.Epoch == "" || tail.Epoch != pos.Epoch:
		return r.newEpoch(ctx, term, pos, fmt.Sprintf("stream epoch %q, sequencer epoch %q", tail.Epoch, pos.Epoch))
	case tail.Seq > handedOut:
		return r.newEpoch(ctx, term, pos, fmt.Sprintf("stream tail %d is past every number handed out (%d)", tail.Seq, handedOut))
	case tail.Seq < pos.Seq && r.failpoint("relay:trust-stream-tail") != nil:
		r.behind, tail.Seq = pos.Seq-tail.Seq, pos.Seq // the old defect: numbering goes on after the short tail
	case tail.Seq < pos.Seq:
		if err := r.repairLost(ctx, term, pos, tail.Seq); err != nil {
			if errors.Is(err, errUnrepairable) {
				return r.newEpoch(ctx, term, pos, err.Error())
			}
			return pos, err
		}
		tail.Seq = pos.Seq
	}
	if claim == nil {
		return pos, nil
	}
	return r.finishClaim(ctx, term, pos, *claim, tail.Seq)
}

// errUnrepairable: the stream lost entries the outbox no longer holds.
var errUnrepairable = errors.New("stream lost entries the outbox no longer has")

// repairLost republishes the marked entries tail+1..pos.Seq that Redis lost,
// with their own numbers, ClaimLimit at a time.
func (r *Relay) repairLost(ctx context.Context, term int64, pos canvas.Position, tail uint64) error {
	from := tail + 1
	for from <= pos.Seq {
		to := min(pos.Seq, from+uint64(r.opts.ClaimLimit)-1)
		events, err := r.out.Published(ctx, pos.Epoch, from, to)
		if err != nil {
			return err
		}
		if uint64(len(events)) != to-from+1 {
			return fmt.Errorf("%w: %d..%d", errUnrepairable, from, pos.Seq)
		}
		if err := r.append(ctx, term, pos.Epoch, from-1, events, time.Now(), false); err != nil {
			return err
		}
		from = to + 1
	}
	r.opts.Logger.Warn("relay: stream lost its newest entries; republished them from the outbox", "from", tail+1, "to", pos.Seq)
	return nil
}

// finishClaim completes an open claim whose first tail-pos.Seq entries the
// stream already holds.
func (r *Relay) finishClaim(ctx context.Context, term int64, pos canvas.Position, c store.Claim, tail uint64) (canvas.Position, error) {
	events, err := r.out.ClaimEvents(ctx, c)
	if errors.Is(err, store.ErrClaimBroken) {
		return r.newEpoch(ctx, term, pos, err.Error())
	}
	if err != nil {
		return pos, err
	}
	done := int(tail - pos.Seq)
	if done > 0 {
		have, err := r.st.Range(ctx, pos.Seq+1, tail, int64(done))
		if err != nil {
			return pos, err
		}
		if len(have) != done {
			return r.newEpoch(ctx, term, pos, fmt.Sprintf("stream holds %d of the claim's first %d entries", len(have), done))
		}
		for i, e := range have {
			if e.ID != c.IDs[i] {
				return r.newEpoch(ctx, term, pos, fmt.Sprintf("stream entry %d is %s, the claim recorded %s", e.Seq, e.ID, c.IDs[i]))
			}
		}
	}
	now := time.Now()
	if err := r.append(ctx, term, pos.Epoch, tail, events[done:], now, true); err != nil {
		return pos, err
	}
	if err := r.replicated(ctx, len(c.IDs)); err != nil {
		return pos, err
	}
	err = r.out.MarkPublished(ctx, r.opts.Holder, term, pos, c, now)
	r.update(func(s *Status) { s.Transactions++ })
	if err != nil {
		return pos, fmt.Errorf("mark the claim a previous leader left open: %w", err)
	}
	r.update(func(s *Status) { s.Reconciled += int64(done) })
	r.opts.Logger.Info("relay: finished the claim a previous leader left open", "found", done, "appended", len(c.IDs)-done, "seq", c.Last())
	return canvas.Position{Epoch: pos.Epoch, Seq: c.Last()}, nil
}

// newEpoch moves the stream to a new epoch, resumably: the store records
// the new epoch first (a retry or a successor finishes the same change
// instead of starting yet another), the republish window is requeued in
// bounded transactions, then Redis is emptied under the new epoch (fenced
// by the term), and last the store commits the change.
func (r *Relay) newEpoch(ctx context.Context, term int64, pos canvas.Position, why string) (canvas.Position, error) {
	return r.changeEpoch(ctx, term, pos, why, slog.LevelWarn)
}

// changeEpoch is newEpoch, logged at level: a warning when an epoch
// ends (its clients resync), information for a canvas's first epoch.
func (r *Relay) changeEpoch(ctx context.Context, term int64, pos canvas.Position, why string, level slog.Level) (canvas.Position, error) {
	candidate := NewEpochID()
	redisFirst := r.failpoint("relay:epoch-redis-first") != nil
	if redisFirst {
		// The old defect: Redis first, with an epoch of its own each try.
		if err := r.st.StartEpoch(ctx, term, candidate); err != nil {
			return pos, err
		}
	}
	epoch, err := r.out.BeginEpoch(ctx, r.opts.Holder, term, candidate, time.Now().Add(-r.opts.RepublishWindow))
	if err != nil {
		return pos, err
	}
	requeued := 0
	for more := true; more; {
		var n int
		if n, more, err = r.out.Requeue(ctx, r.opts.Holder, term, r.opts.ClaimLimit); err != nil {
			return pos, err
		}
		requeued += n
	}
	if err := r.failpoint("relay:before-epoch-redis"); err != nil {
		return pos, err
	}
	if !redisFirst {
		if err := r.st.StartEpoch(ctx, term, epoch); err != nil {
			return pos, err
		}
	}
	if err := r.out.CommitEpoch(ctx, r.opts.Holder, term, epoch); err != nil {
		return pos, err
	}
	r.update(func(s *Status) { s.EpochChanges++ })
	msg := "relay: STARTED NEW STREAM EPOCH; clients will resync"
	if level < slog.LevelWarn {
		msg = "relay: started the stream's first epoch"
	}
	r.opts.Logger.Log(ctx, level, msg, "epoch", epoch, "previous", pos.Epoch, "republishing", requeued, "why", why)
	return canvas.Position{Epoch: epoch}, nil
}

// NewEpochID returns a fresh random epoch token.
func NewEpochID() string {
	var b [10]byte
	_, _ = crand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// publishSpan starts the producer span of one event, a child of the trace
// context the API stored with it (parent, not link: one event is one
// pixel, and its trace should read as one path), and puts the span's
// context in the event, so the stream entry carries it to the gateways.
func (r *Relay) publishSpan(ctx context.Context, ev *canvas.Event) trace.Span {
	if r.tracer == nil || ev.TraceParent == "" {
		return nil
	}
	parent := r.opts.Propagator.Extract(ctx, telemetry.Carrier{TraceParent: &ev.TraceParent, TraceState: &ev.TraceState})
	m := telemetry.Message{Destination: r.opts.Destination, Operation: "publish", Command: "xadd", Seq: ev.Seq, EventID: ev.ID, Epoch: ev.Epoch}
	sctx, sp := r.tracer.Start(parent, m.SpanName(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(m.Attributes()...))
	r.opts.Propagator.Inject(sctx, telemetry.Carrier{TraceParent: &ev.TraceParent, TraceState: &ev.TraceState})
	return sp
}

func endSpans(spans []trace.Span, err error) {
	for _, sp := range spans {
		if err != nil {
			sp.RecordError(err)
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
}
