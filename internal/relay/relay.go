// Package relay moves committed events from the MongoDB outbox into the Redis
// stream. It is the canvas's single sequencer: only the relay holding the
// lease publishes, giving each event the next contiguous sequence number.
//
// Lifecycle: Run loops until its context ends. As a standby it retries the
// lease every LeaseTTL/3. As the leader it first syncs (reconciles the stream
// with the outbox, see sync), then drains pending events in batches, woken by
// the outbox change stream with a slow poll as the safety net, and renews the
// lease. Redis or store errors back off with jitter and never lose an event:
// an event leaves the pending state only in the same transaction that records
// the sequence it was published at. On shutdown it finishes the batch in
// flight and releases the lease so a standby takes over at once.
package relay

import (
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/pixelflow/pixelflow/internal/backoff"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
	"github.com/pixelflow/pixelflow/internal/stream"
	"github.com/pixelflow/pixelflow/internal/telemetry"
)

// Outbox is what the relay needs of the store.
type Outbox interface {
	AcquireLease(ctx context.Context, holder string, ttl time.Duration) (store.Lease, bool, error)
	ReleaseLease(ctx context.Context, holder string) error
	Claim(ctx context.Context, holder string, at canvas.Position) (string, []canvas.Event, error)
	Published(ctx context.Context, epoch string, from, to uint64) ([]canvas.Event, error)
	MarkPublished(ctx context.Context, holder string, from canvas.Position, b store.Batch, at time.Time) error
	StartEpoch(ctx context.Context, holder string, from canvas.Position, epoch string, republishSince time.Time) (int64, error)
	WatchOutbox(ctx context.Context) (<-chan struct{}, <-chan error)
}

// Stream is what the relay needs of the Redis stream.
type Stream interface {
	Publish(ctx context.Context, epoch string, expectTail uint64, entries []stream.Entry) error
	StartEpoch(ctx context.Context, epoch string) error
	Tail(ctx context.Context) (canvas.Position, error)
	Range(ctx context.Context, from, to uint64, count int64) ([]stream.Entry, error)
}

// Options configure a Relay.
type Options struct {
	// Holder identifies this relay in the lease. Required, unique per process.
	Holder string
	// LeaseTTL is how long a lease lasts unrenewed: a crashed leader's
	// standby takes over after at most this long. Default 5s.
	LeaseTTL time.Duration
	// BatchSize bounds the events appended per XADD script call. Default 512.
	BatchSize int
	// Linger is how long the relay waits after publishing a batch of at
	// least lingerAfter events (a sign of load) before it
	// claims the next one, so that under load it publishes fewer, larger
	// batches: each costs two store transactions, and on the embedded store
	// those take turns with the API's writes. Default 0 (claim at once).
	Linger time.Duration
	// PollInterval is the safety-net poll when no change-stream wake-up comes.
	// Default 1s.
	PollInterval time.Duration
	// MinBackoff and MaxBackoff bound the retry delay after errors
	// (exponential, with full jitter). Defaults 50ms and 2s.
	MinBackoff, MaxBackoff time.Duration
	// RepublishWindow is how far back published events are republished into a
	// new epoch after Redis lost the stream. Default 10m.
	RepublishWindow time.Duration
	// Failpoint, when set, is called at "relay:after-xadd"; a non-nil error
	// makes the relay stop right there, as if the process died between the
	// XADD and marking the outbox. For tests.
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
}

// lingerAfter is the batch size from which the relay lingers: below it the
// load is light, and waiting would only add latency.
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
}

// Status is what /api/health shows of the relay.
type Status struct {
	State         string    `json:"state"` // "standby", "leader", "backoff", "stopped"
	Holder        string    `json:"holder"`
	Leader        string    `json:"leader,omitempty"`
	Epoch         string    `json:"epoch,omitempty"`
	Seq           uint64    `json:"seq"`
	Published     int64     `json:"published"`
	Batches       int64     `json:"batches"`
	EpochChanges  int64     `json:"epochChanges"`
	Reconciled    int64     `json:"reconciled"` // events found in the stream and marked, not republished
	LastPublishAt time.Time `json:"lastPublishAt,omitzero"`
	LastError     string    `json:"lastError,omitempty"`
	LastErrorAt   time.Time `json:"lastErrorAt,omitzero"`
}

// New validates opts and returns a relay.
func New(out Outbox, st Stream, opts Options) (*Relay, error) {
	if opts.Holder == "" {
		return nil, errors.New("relay: Holder is required")
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 5 * time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
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
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Propagator == nil {
		opts.Propagator = propagation.TraceContext{}
	}
	if opts.Canary != nil && opts.CanaryInterval <= 0 {
		opts.CanaryInterval = 2 * time.Second
	}
	r := &Relay{out: out, st: st, opts: opts}
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
			backoff.Sleep(ctx, b.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
		}
	}()
	return merged
}

// lead publishes while this relay holds the lease. It returns when the lease
// is lost (or cannot be renewed in time), ctx ends, or a failpoint fires.
func (r *Relay) lead(ctx context.Context, lease store.Lease, wake <-chan struct{}) error {
	pos := lease.Position
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
			if l.Position != pos {
				return fmt.Errorf("sequencer moved to %s while we held %s: %w", l.Position, pos, store.ErrLeaseLost)
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
			pos, err = r.sync(ctx, pos)
			if err == nil {
				synced = true
				r.update(func(s *Status) { s.Epoch, s.Seq, s.State = pos.Epoch, pos.Seq, "leader" })
			}
		}
		n := 0
		if err == nil {
			pos, n, err = r.publishClaim(ctx, pos)
		}
		switch {
		case errors.Is(err, ErrFailpoint), errors.Is(err, store.ErrLeaseLost):
			return err
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			synced = false
			r.fail(err)
			r.update(func(s *Status) { s.State = "backoff" })
			r.opts.Logger.Warn("relay: publish", "err", err)
			backoff.Sleep(ctx, b.Next(r.opts.MinBackoff, r.opts.MaxBackoff))
			continue
		}
		b.Reset()
		if n > 0 {
			// More may have arrived while publishing; after Linger, more
			// still.
			if r.opts.Linger > 0 && n >= lingerAfter {
				backoff.Sleep(ctx, r.opts.Linger)
			}
			continue
		}
		wait := min(time.Until(renewAt), r.opts.PollInterval)
		if r.opts.Canary != nil {
			wait = min(wait, time.Until(nextCanary))
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// publishClaim claims every pending event and publishes them after pos in
// chunks of BatchSize, then marks them all published in one transaction. It
// returns the new position and how many events it published.
func (r *Relay) publishClaim(ctx context.Context, pos canvas.Position) (canvas.Position, int, error) {
	claim, events, err := r.out.Claim(ctx, r.opts.Holder, pos)
	if err != nil || len(events) == 0 {
		return pos, 0, err
	}
	// The claim in flight completes even if ctx is cancelled meanwhile:
	// shutdown waits for it rather than leaving it unmarked.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	now := time.Now()
	ids := make([]string, len(events))
	for start := 0; start < len(events); start += r.opts.BatchSize {
		chunk := events[start:min(start+r.opts.BatchSize, len(events))]
		tail := pos.Seq + uint64(start)
		entries := make([]stream.Entry, len(chunk))
		var spans []trace.Span
		for i, ev := range chunk {
			ev.Epoch, ev.Seq = pos.Epoch, tail+uint64(i)+1
			if sp := r.publishSpan(bctx, &ev); sp != nil {
				spans = append(spans, sp)
			}
			entries[i] = stream.Entry{Event: ev, PublishedAt: now}
			ids[start+i] = ev.ID
		}
		err := r.st.Publish(bctx, pos.Epoch, tail, entries)
		endSpans(spans, err)
		if err != nil {
			return pos, 0, fmt.Errorf("publish %d events after %d: %w", len(entries), tail, err)
		}
		if r.opts.Failpoint != nil {
			if err := r.opts.Failpoint("relay:after-xadd"); err != nil {
				return pos, 0, fmt.Errorf("%w: %v", ErrFailpoint, err)
			}
		}
	}
	if err := r.out.MarkPublished(bctx, r.opts.Holder, pos, store.Batch{Claim: claim, IDs: ids}, now); err != nil {
		return pos, 0, fmt.Errorf("mark %d events published: %w", len(ids), err)
	}
	next := canvas.Position{Epoch: pos.Epoch, Seq: pos.Seq + uint64(len(events))}
	r.update(func(s *Status) {
		s.Seq, s.Published, s.Batches, s.LastPublishAt = next.Seq, s.Published+int64(len(events)), s.Batches+1, now
	})
	return next, len(events), nil
}

// sync reconciles the stream with the sequencer's position pos (from the
// store) before publishing:
//
//   - Redis has no epoch, or another one: Redis lost its data (or this is the
//     first start). Start a new epoch and requeue the republish window.
//   - The stream's tail is past pos: a previous leader died between XADD and
//     marking. Mark those entries published instead of publishing them twice.
//   - The tail is behind pos: Redis lost its newest entries (e.g. an fsync
//     window). Republish them with their sequence numbers from the outbox, or
//     start a new epoch if the outbox no longer has them.
func (r *Relay) sync(ctx context.Context, pos canvas.Position) (canvas.Position, error) {
	tail, err := r.st.Tail(ctx)
	if err != nil {
		return pos, err
	}
	switch {
	case tail.Epoch == "" || tail.Epoch != pos.Epoch:
		return r.newEpoch(ctx, pos, fmt.Sprintf("stream epoch %q, sequencer epoch %q", tail.Epoch, pos.Epoch))
	case tail.Seq > pos.Seq:
		for pos.Seq < tail.Seq {
			entries, err := r.st.Range(ctx, pos.Seq+1, tail.Seq, int64(r.opts.BatchSize))
			if err != nil {
				return pos, err
			}
			if len(entries) == 0 || entries[0].Seq != pos.Seq+1 {
				return r.newEpoch(ctx, pos, "unmarked stream entries were trimmed")
			}
			marks := make([]string, 0, len(entries))
			for i, e := range entries {
				if e.Seq != pos.Seq+uint64(i)+1 || e.Epoch != pos.Epoch {
					return r.newEpoch(ctx, pos, fmt.Sprintf("stream entry %d breaks the sequence", e.Seq))
				}
				marks = append(marks, e.ID)
			}
			if err := r.out.MarkPublished(ctx, r.opts.Holder, pos, store.Batch{IDs: marks}, entries[len(entries)-1].PublishedAt); err != nil {
				return pos, err
			}
			pos.Seq += uint64(len(marks))
			r.update(func(s *Status) { s.Reconciled += int64(len(marks)) })
			r.opts.Logger.Info("relay: marked entries a previous leader published", "count", len(marks), "seq", pos.Seq)
		}
	case tail.Seq < pos.Seq:
		events, err := r.out.Published(ctx, pos.Epoch, tail.Seq+1, pos.Seq)
		if err != nil {
			return pos, err
		}
		if uint64(len(events)) != pos.Seq-tail.Seq {
			return r.newEpoch(ctx, pos, fmt.Sprintf("stream lost entries %d..%d and the outbox no longer has them all", tail.Seq+1, pos.Seq))
		}
		now := time.Now()
		for start := 0; start < len(events); start += r.opts.BatchSize {
			chunk := events[start:min(start+r.opts.BatchSize, len(events))]
			entries := make([]stream.Entry, len(chunk))
			for i, ev := range chunk {
				entries[i] = stream.Entry{Event: ev, PublishedAt: now}
			}
			if err := r.st.Publish(ctx, pos.Epoch, tail.Seq+uint64(start), entries); err != nil {
				return pos, err
			}
		}
		r.opts.Logger.Warn("relay: stream lost its newest entries; republished them from the outbox", "from", tail.Seq+1, "to", pos.Seq)
	}
	return pos, nil
}

// newEpoch starts a new epoch in Redis, then in the store (fenced by the
// lease), requeueing recently published events so they reach the new stream.
func (r *Relay) newEpoch(ctx context.Context, pos canvas.Position, why string) (canvas.Position, error) {
	epoch := NewEpochID()
	if err := r.st.StartEpoch(ctx, epoch); err != nil {
		return pos, err
	}
	n, err := r.out.StartEpoch(ctx, r.opts.Holder, pos, epoch, time.Now().Add(-r.opts.RepublishWindow))
	if err != nil {
		return pos, err
	}
	r.update(func(s *Status) { s.EpochChanges++ })
	r.opts.Logger.Warn("relay: STARTED NEW STREAM EPOCH; clients will resync", "epoch", epoch, "previous", pos.Epoch, "republishing", n, "why", why)
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
	sctx, sp := r.tracer.Start(parent, "publish "+r.opts.Destination, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", r.opts.Destination),
			attribute.String("messaging.operation.type", "publish"),
			attribute.String("messaging.operation.name", "xadd"),
			attribute.String("messaging.message.id", strconv.FormatUint(ev.Seq, 10)),
			attribute.String("pixelflow.event_id", ev.ID),
			attribute.String("pixelflow.epoch", ev.Epoch),
		))
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
