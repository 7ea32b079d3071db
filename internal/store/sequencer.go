package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// ErrLeaseLost means the caller no longer holds the sequencer lease (it
// expired and another relay took it, or the sequence moved under it). The
// caller must stop publishing and re-acquire.
var ErrLeaseLost = errors.New("sequencer lease lost")

// ErrClaimBroken means an open claim names an event the outbox no longer
// holds as pending. It cannot happen while only relays change the outbox;
// the relay answers it with a new epoch rather than guess at the numbers.
var ErrClaimBroken = errors.New("open claim names events the outbox no longer has")

// SequencerFormat is the format of the sequencer state this release writes
// and reads (seqDoc.Format). Each leader records it when it takes or
// renews the lease.
//
//   - 1 (no format field; releases before the field): every claim tags its
//     events in the outbox with the claim's id.
//   - 2: a claim of up to 16 events (tagAbove) is not tagged; it is found
//     by the ids the sequencer records. A release of format 1 taking over
//     such an open claim finds none of its events by tag and starts a new
//     epoch (every client resyncs): safe, but not a rolling upgrade.
//
// This release reads format 1 state as well (ids find tagged claims too).
// State of a higher format was written by a newer release, whose claims
// this one might not find: AcquireLease refuses it with ErrNewerFormat,
// so an older relay does not take over from a newer one.
const SequencerFormat = 2

// ErrNewerFormat means the sequencer state was written by a newer release
// (see SequencerFormat): this relay must not lead, or even stand by.
var ErrNewerFormat = errors.New("sequencer written by a newer pixelflow")

// seqDoc is the canvas's sequencer: the lease that makes one relay the only
// publisher, the last marked position, and the work in flight, recorded
// before it touches Redis so a successor can finish it exactly.
type seqDoc struct {
	ID        string    `bson:"_id"`
	Holder    string    `bson:"holder"`
	ExpiresAt time.Time `bson:"expiresAt"`
	// Term grows by one whenever the lease changes hands (or lapsed): the
	// Redis scripts refuse older terms, which fences a deposed leader.
	Term  int64  `bson:"term"`
	Epoch string `bson:"epoch"`
	Seq   uint64 `bson:"seq"`
	// Claim is the open claim: events numbered Seq+1, Seq+2, … in this
	// order, perhaps partly appended to the stream, not yet marked.
	Claim *claimDoc `bson:"claim,omitempty"`
	// NextEpoch is an epoch change in progress; RequeueSince its republish
	// window (zero when nothing is to be requeued).
	NextEpoch    string     `bson:"nextEpoch,omitempty"`
	RequeueSince *time.Time `bson:"requeueSince,omitempty"`
	// Format is the SequencerFormat of the last leader (0: before the
	// field, format 1).
	Format int `bson:"format,omitempty"`
}

type claimDoc struct {
	ID  string   `bson:"id"`
	IDs []string `bson:"ids"`
}

// doc is c as the sequencer stores it (claimDoc's fields), built as a
// document of plain values: the embedded engine converts those directly,
// where a struct costs it a marshal round trip on every claim.
func (c Claim) doc() bson.D {
	ids := make(bson.A, len(c.IDs))
	for i, id := range c.IDs {
		ids[i] = id
	}
	return bson.D{{Key: "id", Value: c.ID}, {Key: "ids", Value: ids}}
}

func (d seqDoc) lease() Lease {
	l := Lease{Holder: d.Holder, ExpiresAt: d.ExpiresAt, Term: d.Term, Position: canvas.Position{Epoch: d.Epoch, Seq: d.Seq},
		NextEpoch: d.NextEpoch}
	if d.RequeueSince != nil {
		l.RequeueSince = *d.RequeueSince
	}
	if d.Claim != nil {
		l.Claim = &Claim{ID: d.Claim.ID, First: d.Seq + 1, IDs: d.Claim.IDs}
	}
	return l
}

// Claim is a run of events numbered First, First+1, … in the order of IDs.
// It is recorded in the sequencer before any of it reaches the stream, so a
// number once handed out always names the same event in its epoch: a
// successor finishes an open claim with the same numbers, whatever Redis
// kept of it.
type Claim struct {
	ID    string
	First uint64
	IDs   []string
}

// Last is the claim's last sequence number.
func (c Claim) Last() uint64 { return c.First + uint64(len(c.IDs)) - 1 }

// Lease is a held sequencer lease and the sequencer's state: the marked
// position, the open claim and an epoch change in progress.
type Lease struct {
	Holder    string
	ExpiresAt time.Time
	Term      int64
	canvas.Position
	Claim        *Claim
	NextEpoch    string
	RequeueSince time.Time
}

// SequencerState is the sequencer as others see it (health pages, the
// snapshot key).
type SequencerState struct {
	Holder    string
	ExpiresAt time.Time
	// Position is the marked (published) position.
	canvas.Position
	// Numbered is the last sequence number handed out in Epoch: the open
	// claim's last, else Seq. The claim is recorded before any of it is
	// offered or appended, so no process has handed a client a position
	// of this epoch past Numbered when it is read.
	Numbered uint64
}

func (s *Store) sequencer(ctx context.Context) (seqDoc, error) {
	var d seqDoc
	err := s.db.Collection(cSequencers).FindOne(ctx, bson.M{"_id": s.opts.Canvas}).Decode(&d)
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return d, unavailable("read sequencer", err)
	}
	return d, nil
}

// Sequencer returns the current lease holder and published position.
func (s *Store) Sequencer(ctx context.Context) (SequencerState, error) {
	d, err := s.sequencer(ctx)
	st := SequencerState{Holder: d.Holder, ExpiresAt: d.ExpiresAt, Position: canvas.Position{Epoch: d.Epoch, Seq: d.Seq}, Numbered: d.Seq}
	if d.Claim != nil {
		st.Numbered += uint64(len(d.Claim.IDs))
	}
	return st, err
}

// AcquireLease takes or renews the lease for holder for ttl and returns the
// sequencer's state. ok is false when another holder's lease is still valid.
// Taking a lease that is not a renewal of one's own valid lease starts a new
// term.
func (s *Store) AcquireLease(ctx context.Context, holder string, ttl time.Duration) (l Lease, ok bool, err error) {
	err = s.txn(ctx, "acquire lease", func(sc lungo.ISessionContext) error {
		ok = false
		now := s.opts.Now()
		var d seqDoc
		err := s.db.Collection(cSequencers).FindOne(sc, bson.M{"_id": s.opts.Canvas}).Decode(&d)
		valid := err == nil && d.ExpiresAt.After(now)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			d = seqDoc{ID: s.opts.Canvas}
		case err != nil:
			return err
		case d.Format > SequencerFormat:
			return fmt.Errorf("%w: canvas %q's sequencer is in format %d, this release reads up to %d; "+
				"an older relay may not find a newer one's open claim, so this one will not lead: run the newer release "+
				"(see docs/operations.md, Upgrades)", ErrNewerFormat, s.opts.Canvas, d.Format, SequencerFormat)
		case d.Holder != holder && valid:
			l = d.lease()
			return nil
		}
		if d.Holder != holder || !valid {
			d.Term++
		}
		d.Holder, d.ExpiresAt = holder, now.Add(ttl)
		_, err = s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas},
			bson.M{"$set": bson.M{"holder": d.Holder, "expiresAt": d.ExpiresAt, "term": d.Term, "format": SequencerFormat}}, options.Update().SetUpsert(true))
		if err != nil {
			return err
		}
		ok = true
		l = d.lease()
		return nil
	})
	return l, ok, err
}

// AdvanceTerm moves the term of holder's valid lease of term term past
// seen, a newer term Redis has recorded, and returns the lease. The store
// decides who leads; Redis's term only fences deposed leaders. But a
// store that began again (reset, or restored from a backup) while Redis
// kept its history hands out terms Redis has seen, and its rightful leader
// would be fenced for ever. It fails with ErrLeaseLost unless holder holds
// that lease, so a deposed leader cannot use it to take over.
func (s *Store) AdvanceTerm(ctx context.Context, holder string, term, seen int64) (l Lease, err error) {
	err = s.txn(ctx, "advance lease term", func(sc lungo.ISessionContext) error {
		d, err := s.fence(sc, holder, term)
		if err != nil {
			return err
		}
		d.Term = max(d.Term, seen) + 1
		if _, err := s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas}, bson.M{"$set": bson.M{"term": d.Term}}); err != nil {
			return err
		}
		l = d.lease()
		return nil
	})
	return l, err
}

// ReleaseLease gives the lease up so a standby takes over at once.
func (s *Store) ReleaseLease(ctx context.Context, holder string) error {
	_, err := s.db.Collection(cSequencers).UpdateOne(ctx,
		bson.M{"_id": s.opts.Canvas, "holder": holder},
		bson.M{"$set": bson.M{"expiresAt": time.Time{}}})
	if err != nil {
		return unavailable("release lease", err)
	}
	return nil
}

// fence loads the sequencer inside a transaction and fails with ErrLeaseLost
// unless holder holds a valid lease of term term.
func (s *Store) fence(sc lungo.ISessionContext, holder string, term int64) (seqDoc, error) {
	var d seqDoc
	if err := s.db.Collection(cSequencers).FindOne(sc, bson.M{"_id": s.opts.Canvas}).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return d, ErrLeaseLost
		}
		return d, err
	}
	if d.Holder != holder || d.Term != term || !d.ExpiresAt.After(s.opts.Now()) {
		return d, ErrLeaseLost
	}
	return d, nil
}

// fenceAt is fence plus: the sequencer is at position at and no epoch
// change is in progress.
func (s *Store) fenceAt(sc lungo.ISessionContext, holder string, term int64, at canvas.Position) (seqDoc, error) {
	d, err := s.fence(sc, holder, term)
	if err == nil && (d.Epoch != at.Epoch || d.Seq != at.Seq || d.NextEpoch != "") {
		err = ErrLeaseLost
	}
	return d, err
}

// pendingOrder is the order events are claimed in: lowest version first
// publishes each pixel's versions in order, which keeps a client that starts
// from a version-less (binary) snapshot converging.
// _id last makes the order total, so a claim's events are exactly a prefix.
var pendingOrder = bson.D{{Key: "version", Value: 1}, {Key: "committedAt", Value: 1}, {Key: "_id", Value: 1}}

// Pending returns up to limit unpublished events, lowest version first.
func (s *Store) Pending(ctx context.Context, limit int) ([]canvas.Event, error) {
	cur, err := s.db.Collection(cOutbox).Find(ctx, s.inState(statePending),
		options.Find().SetSort(pendingOrder).SetLimit(int64(limit)))
	if err != nil {
		return nil, unavailable("read pending events", err)
	}
	return decodeEvents(ctx, cur)
}

// Claim opens a claim on up to limit pending events, lowest version first,
// numbered from at.Seq+1, in one transaction fenced by the lease: the
// numbers are durable before the relay appends anything to the stream. It
// returns an empty claim when nothing is pending. The caller must hold no
// open claim (it finishes one first, see Lease.Claim); a new claim replaces
// the record. It writes the sequencer document and, for a large claim
// only, the tags of its events (see tagAbove), so a claim costs the same
// whatever the backlog.
func (s *Store) Claim(ctx context.Context, holder string, term int64, at canvas.Position, limit int) (c Claim, events []canvas.Event, err error) {
	if limit <= 0 {
		return c, nil, fmt.Errorf("claim: limit %d", limit)
	}
	err = s.txn(ctx, "claim pending events", func(sc lungo.ISessionContext) error {
		c, events = Claim{}, nil
		if _, err := s.fenceAt(sc, holder, term, at); err != nil {
			return err
		}
		if c, events, err = s.claimPending(sc, at.Seq+1, limit); err != nil || len(events) == 0 {
			return err
		}
		_, err = s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas},
			bson.M{"$set": bson.M{"claim": c.doc()}})
		return err
	})
	if err != nil {
		return Claim{}, nil, err
	}
	return c, events, nil
}

// claimPending finds up to limit pending events in claim order and makes
// them a new claim numbered from first (tagging them when the claim is
// large, see tagAbove), inside the caller's transaction; the caller records
// the claim in the sequencer.
func (s *Store) claimPending(sc lungo.ISessionContext, first uint64, limit int) (Claim, []canvas.Event, error) {
	cur, err := s.db.Collection(cOutbox).Find(sc, s.inState(statePending),
		options.Find().SetSort(pendingOrder).SetLimit(int64(limit)))
	if err != nil {
		return Claim{}, nil, err
	}
	events, err := decodeEvents(sc, cur)
	if err != nil || len(events) == 0 {
		return Claim{}, nil, err
	}
	c := Claim{ID: primitive.NewObjectID().Hex(), First: first, IDs: make([]string, len(events))}
	for i, e := range events {
		c.IDs[i] = e.ID
	}
	if !c.tagged() {
		return c, events, nil
	}
	// Tag exactly the events found (the first len(events) pending in
	// claim order) by one predicate: on the embedded engine a predicate
	// costs one scan where an _id list costs a scan per listed id.
	// Marking then finds them by the tag.
	last := events[len(events)-1]
	lastID, err := primitive.ObjectIDFromHex(last.ID)
	if err != nil {
		return Claim{}, nil, err
	}
	res, err := s.db.Collection(cOutbox).UpdateMany(sc, bson.M{"canvas": s.opts.Canvas, "state": statePending, "$or": bson.A{
		bson.M{"version": bson.M{"$lt": last.Version}},
		bson.M{"version": last.Version, "committedAt": bson.M{"$lt": last.CommittedAt}},
		bson.M{"version": last.Version, "committedAt": last.CommittedAt, "_id": bson.M{"$lte": lastID}},
	}}, bson.M{"$set": bson.M{"claim": c.ID}})
	if err != nil {
		return Claim{}, nil, err
	}
	if res.MatchedCount != int64(len(events)) {
		return Claim{}, nil, fmt.Errorf("claim tagged %d events, found %d", res.MatchedCount, len(events))
	}
	return c, events, nil
}

// tagAbove is the size above which a claim tags its events. A small claim
// finds its events by their ids, which the sequencer records anyway: that
// saves the claim a write to the outbox, a third of the relay's work per
// batch at a few events a batch. A large one tags them, since the embedded
// engine matches an id list per document (a claim of k events in an
// outbox of n costs n·k comparisons) where a tag costs one comparison.
const tagAbove = 16

// tagged reports whether c's events carry its id (see tagAbove). The rule
// depends on the claim alone, so whoever finishes a claim finds its events
// the way the claimer recorded them.
func (c Claim) tagged() bool { return len(c.IDs) > tagAbove }

// claimFilter matches claim c's events that are still pending: by tag, or
// by id (see tagAbove). Either way an event the outbox no longer holds as
// pending is not matched.
func (s *Store) claimFilter(c Claim) (bson.M, error) {
	if c.tagged() {
		return bson.M{"canvas": s.opts.Canvas, "claim": c.ID, "state": statePending}, nil
	}
	// A bson.A, not a []ObjectID: the embedded engine converts plain
	// values directly, where a typed slice costs it a marshal round trip.
	oids := make(bson.A, len(c.IDs))
	for i, id := range c.IDs {
		oid, err := primitive.ObjectIDFromHex(id)
		if err != nil {
			return nil, fmt.Errorf("claim %s: event id %q: %w", c.ID, id, err)
		}
		oids[i] = oid
	}
	return bson.M{"_id": bson.M{"$in": oids}, "canvas": s.opts.Canvas, "state": statePending}, nil
}

// ClaimEvents loads an open claim's events in the claim's order. It fails
// with ErrClaimBroken when one of them is no longer pending.
func (s *Store) ClaimEvents(ctx context.Context, c Claim) ([]canvas.Event, error) {
	filter, err := s.claimFilter(c)
	if err != nil {
		return nil, err
	}
	cur, err := s.db.Collection(cOutbox).Find(ctx, filter)
	if err != nil {
		return nil, unavailable("read claimed events", err)
	}
	events, err := decodeEvents(ctx, cur)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]canvas.Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	out := make([]canvas.Event, len(c.IDs))
	for i, id := range c.IDs {
		e, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("claim %s: event %s: %w", c.ID, id, ErrClaimBroken)
		}
		out[i] = e
	}
	return out, nil
}

func decodeEvents(ctx context.Context, cur lungo.ICursor) ([]canvas.Event, error) {
	var docs []outboxDoc
	if err := cur.All(ctx, &docs); err != nil {
		return nil, unavailable("decode outbox events", err)
	}
	out := make([]canvas.Event, 0, len(docs))
	for _, d := range docs {
		e, err := d.event()
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// batchDoc records which events a run of sequence numbers carried, so a
// stream that lost its newest entries can be repaired from the outbox.
type batchDoc struct {
	ID          string    `bson:"_id"` // canvas/epoch/first
	Canvas      string    `bson:"canvas"`
	Epoch       string    `bson:"epoch"`
	First       uint64    `bson:"first"`
	Last        uint64    `bson:"last"`
	IDs         []string  `bson:"ids"`
	PublishedAt time.Time `bson:"publishedAt"`
}

// Published returns the events published in epoch with from <= seq <= to,
// in sequence order, as far as the outbox still holds them.
func (s *Store) Published(ctx context.Context, epoch string, from, to uint64) ([]canvas.Event, error) {
	cur, err := s.db.Collection(cBatches).Find(ctx,
		bson.M{"canvas": s.opts.Canvas, "epoch": epoch, "last": bson.M{"$gte": from}, "first": bson.M{"$lte": to}},
		options.Find().SetSort(bson.D{{Key: "first", Value: 1}}))
	if err != nil {
		return nil, unavailable("read published batches", err)
	}
	var batches []batchDoc
	if err := cur.All(ctx, &batches); err != nil {
		return nil, unavailable("read published batches", err)
	}
	seqOf := map[primitive.ObjectID]uint64{}
	var oids []primitive.ObjectID
	for _, b := range batches {
		for i, id := range b.IDs {
			seq := b.First + uint64(i)
			if seq < from || seq > to {
				continue
			}
			oid, err := primitive.ObjectIDFromHex(id)
			if err != nil {
				return nil, fmt.Errorf("batch %s: %w", b.ID, err)
			}
			seqOf[oid] = seq
			oids = append(oids, oid)
		}
	}
	if len(oids) == 0 {
		return nil, nil
	}
	cur, err = s.db.Collection(cOutbox).Find(ctx, bson.M{"_id": bson.M{"$in": oids}, "canvas": s.opts.Canvas, "state": statePublished, "epoch": epoch})
	if err != nil {
		return nil, unavailable("read published events", err)
	}
	events, err := decodeEvents(ctx, cur)
	if err != nil {
		return nil, err
	}
	for i := range events {
		oid, _ := primitive.ObjectIDFromHex(events[i].ID)
		events[i].Seq = seqOf[oid]
	}
	sort.Slice(events, func(i, j int) bool { return events[i].Seq < events[j].Seq })
	return events, nil
}

// MarkPublished records that claim c was appended to the stream after
// position from: its events leave the pending state, a batch record keeps
// which event each number carried, and the sequencer moves to c.Last() with
// no open claim, in one transaction fenced by the lease, the position and
// the claim. If any of them moved, nothing is written and ErrLeaseLost is
// returned.
func (s *Store) MarkPublished(ctx context.Context, holder string, term int64, from canvas.Position, c Claim, at time.Time) error {
	if len(c.IDs) == 0 {
		return nil
	}
	if err := follows(c, from); err != nil {
		return err
	}
	return s.txn(ctx, "mark published", func(sc lungo.ISessionContext) error {
		if err := s.markClaim(sc, from, c, at); err != nil {
			return err
		}
		if err := s.moveSequencer(sc, holder, term, from, c, Claim{}); err != nil {
			return err
		}
		return s.recordBatch(sc, from, c, at)
	})
}

// MarkAndClaim is MarkPublished of claim c followed by Claim from
// c.Last(), in one transaction: the relay folds the mark of the claim it
// appended last into the claim of the next events, so under continuous
// writes each batch costs one store transaction instead of two. The fences
// are both halves': the lease, the position from, and c being the open
// claim; if any moved, nothing is written and ErrLeaseLost is returned.
// next is empty when nothing more is pending (c is then marked and no claim
// is open), and holds at most limit events.
func (s *Store) MarkAndClaim(ctx context.Context, holder string, term int64, from canvas.Position, c Claim, at time.Time, limit int) (next Claim, events []canvas.Event, err error) {
	if limit <= 0 {
		return next, nil, fmt.Errorf("mark and claim: limit %d", limit)
	}
	if len(c.IDs) == 0 {
		return next, nil, fmt.Errorf("mark and claim: claim %q is empty", c.ID)
	}
	if err := follows(c, from); err != nil {
		return next, nil, err
	}
	err = s.txn(ctx, "mark published and claim", func(sc lungo.ISessionContext) error {
		next, events = Claim{}, nil
		if err := s.markClaim(sc, from, c, at); err != nil {
			return err
		}
		if next, events, err = s.claimPending(sc, c.Last()+1, limit); err != nil {
			return err
		}
		if err := s.moveSequencer(sc, holder, term, from, c, next); err != nil {
			return err
		}
		return s.recordBatch(sc, from, c, at)
	})
	if err != nil {
		return Claim{}, nil, err
	}
	return next, events, nil
}

// follows checks that claim c starts right after position from.
func follows(c Claim, from canvas.Position) error {
	if c.First != from.Seq+1 {
		return fmt.Errorf("mark claim %s: it starts at %d, not after %s", c.ID, c.First, from)
	}
	return nil
}

// moveSequencer is the sequencer half of marking claim c, inside the
// caller's transaction, and the fence of both halves: only if holder holds
// a valid lease of term, the sequencer is at from with no epoch change in
// progress and c is its open claim, its position moves past c and next
// (when it has events) is recorded as the open claim, or no claim is open.
// Otherwise it returns ErrLeaseLost and the caller's transaction, the
// outbox half with it, is rolled back. The fence is the update's filter:
// one conditional update where a read of the sequencer and a write were.
func (s *Store) moveSequencer(sc lungo.ISessionContext, holder string, term int64, from canvas.Position, c Claim, next Claim) error {
	update := bson.M{"$set": bson.M{"seq": int64(c.Last())}, "$unset": bson.M{"claim": ""}}
	if len(next.IDs) > 0 {
		update = bson.M{"$set": bson.M{"seq": int64(c.Last()), "claim": next.doc()}}
	}
	res, err := s.db.Collection(cSequencers).UpdateOne(sc, bson.M{
		"_id": s.opts.Canvas, "holder": holder, "term": term,
		// A lease valid after now, now rounded up to the stored
		// precision (milliseconds): never looser than fence's check.
		"expiresAt": bson.M{"$gt": ceilMillis(s.opts.Now())},
		"epoch":     orUnset(from.Epoch, ""), "seq": orUnset(int64(from.Seq), 0),
		"nextEpoch": orUnset("", ""),
		"claim.id":  c.ID,
	}, update)
	if err != nil {
		return err
	}
	if res.MatchedCount == 0 {
		return ErrLeaseLost
	}
	return nil
}

// orUnset matches v, and when v is the zero value also a field never set
// (a sequencer that has not started an epoch has neither epoch nor seq),
// as fence compares decoded fields, where a missing one reads as zero.
func orUnset[T comparable](v, zero T) any {
	if v == zero {
		return bson.M{"$in": bson.A{nil, zero}}
	}
	return v
}

// ceilMillis rounds t up to a whole millisecond, the precision of a BSON
// date.
func ceilMillis(t time.Time) time.Time {
	if r := t.Truncate(time.Millisecond); !r.Equal(t) {
		return r.Add(time.Millisecond)
	}
	return t
}

// markClaim is the outbox half of marking claim c published, inside the
// caller's transaction: its events are deleted (PruneOnPublish) or marked
// published. The caller then moves the sequencer past c with
// moveSequencer, whose fence rolls this half back if the lease, the
// position from or the open claim moved, and finishes with recordBatch.
func (s *Store) markClaim(sc lungo.ISessionContext, from canvas.Position, c Claim, at time.Time) error {
	filter, err := s.claimFilter(c)
	if err != nil {
		return err
	}
	if s.opts.PruneOnPublish {
		return s.deleteNewestFirst(sc, cOutbox, filter)
	}
	_, err = s.db.Collection(cOutbox).UpdateMany(sc, filter, bson.M{
		"$set":   bson.M{"state": statePublished, "epoch": from.Epoch, "publishedAt": at.UTC()},
		"$unset": bson.M{"claim": ""},
	})
	return err
}

// recordBatch is the last step of marking claim c, after moveSequencer's
// fence passed (a stale mark is refused there, with ErrLeaseLost, not
// here on the batch's duplicate id): without PruneOnPublish it records
// the batch that numbered c's events, for Published.
func (s *Store) recordBatch(sc lungo.ISessionContext, from canvas.Position, c Claim, at time.Time) error {
	if !s.opts.PruneOnPublish {
		_, err := s.db.Collection(cBatches).InsertOne(sc, batchDoc{
			ID: fmt.Sprintf("%s/%s/%d", s.opts.Canvas, from.Epoch, c.First), Canvas: s.opts.Canvas, Epoch: from.Epoch,
			First: c.First, Last: c.Last(), IDs: c.IDs, PublishedAt: at.UTC(),
		})
		if err != nil {
			return err
		}
	}
	return s.failpoint("mark:before-commit")
}

// BeginEpoch records that the sequencer moves to a new epoch, before Redis
// is touched, and returns that epoch: candidate, or the epoch of a change
// already in progress, so a retried or resumed change keeps its one epoch
// instead of starting another each time. republishSince is the window of
// published events to requeue (ignored with PruneOnPublish, which keeps
// none; kept from the first call when resuming).
func (s *Store) BeginEpoch(ctx context.Context, holder string, term int64, candidate string, republishSince time.Time) (epoch string, err error) {
	err = s.txn(ctx, "begin epoch", func(sc lungo.ISessionContext) error {
		d, err := s.fence(sc, holder, term)
		if err != nil {
			return err
		}
		if d.NextEpoch != "" {
			epoch = d.NextEpoch
			return nil
		}
		epoch = candidate
		set := bson.M{"nextEpoch": candidate}
		if !s.opts.PruneOnPublish {
			set["requeueSince"] = republishSince.UTC()
		}
		_, err = s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas}, bson.M{"$set": set})
		return err
	})
	return epoch, err
}

// Requeue returns up to limit events published inside the republish window
// of the epoch change in progress to the pending state, so the relay
// publishes them again into the new stream. It runs before CommitEpoch (no
// claim is opened meanwhile), so each pixel's versions still reach the new
// stream in order. more is true while the window may hold more; each call
// is one bounded transaction, and a call after a crash goes on where the
// last one stopped.
func (s *Store) Requeue(ctx context.Context, holder string, term int64, limit int) (n int, more bool, err error) {
	if limit <= 0 {
		return 0, false, fmt.Errorf("requeue: limit %d", limit)
	}
	err = s.txn(ctx, "requeue published events", func(sc lungo.ISessionContext) error {
		n, more = 0, false
		d, err := s.fence(sc, holder, term)
		if err != nil || d.NextEpoch == "" || d.RequeueSince == nil {
			return err
		}
		coll := s.db.Collection(cOutbox)
		cur, err := coll.Find(sc, bson.M{"canvas": s.opts.Canvas, "state": statePublished, "publishedAt": bson.M{"$gte": *d.RequeueSince}},
			options.Find().SetLimit(int64(limit)).SetProjection(bson.M{"_id": 1}))
		if err != nil {
			return err
		}
		var docs []struct {
			ID primitive.ObjectID `bson:"_id"`
		}
		if err := cur.All(sc, &docs); err != nil {
			return err
		}
		if len(docs) == 0 {
			return nil
		}
		oids := make([]primitive.ObjectID, len(docs))
		for i, doc := range docs {
			oids[i] = doc.ID
		}
		res, err := coll.UpdateMany(sc, bson.M{"_id": bson.M{"$in": oids}},
			bson.M{"$set": bson.M{"state": statePending}, "$unset": bson.M{"epoch": "", "publishedAt": ""}})
		if err != nil {
			return err
		}
		n, more = int(res.ModifiedCount), len(docs) == limit
		return nil
	})
	return n, more, err
}

// CommitEpoch completes the epoch change in progress: the sequencer moves to
// epoch at sequence 0 with no open claim (its events are still pending and
// are claimed again under the new epoch). Fenced by the lease; epoch must be
// the one BeginEpoch recorded.
func (s *Store) CommitEpoch(ctx context.Context, holder string, term int64, epoch string) error {
	return s.txn(ctx, "commit epoch", func(sc lungo.ISessionContext) error {
		d, err := s.fence(sc, holder, term)
		if err != nil {
			return err
		}
		if d.NextEpoch != epoch {
			return fmt.Errorf("commit epoch %s: the change in progress is %q: %w", epoch, d.NextEpoch, ErrLeaseLost)
		}
		if err := s.failpoint("epoch:before-commit"); err != nil {
			return err
		}
		_, err = s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas}, bson.M{
			"$set":   bson.M{"epoch": epoch, "seq": uint64(0)},
			"$unset": bson.M{"claim": "", "nextEpoch": "", "requeueSince": ""},
		})
		return err
	})
}

// WatchOutbox sends on the returned channel (without blocking, coalescing)
// whenever events are inserted into the outbox, until ctx ends or the change
// stream fails; the error channel then receives why. Only inserts wake: the
// relay's own claims and marks update and delete outbox documents, and a
// wake-up for those would only make it claim nothing (and, with the mark
// deferred, fold nothing). Requeue, the only other way an event becomes
// pending, runs in the relay, which claims right after it. It watches with
// an empty pipeline and filters here: lungo panics on pipelines.
func (s *Store) WatchOutbox(ctx context.Context) (<-chan struct{}, <-chan error) {
	wake := make(chan struct{}, 1)
	errc := make(chan error, 1)
	go func() {
		cs, err := s.db.Collection(cOutbox).Watch(ctx, []bson.M{})
		if err != nil {
			errc <- unavailable("watch outbox", err)
			return
		}
		defer cs.Close(context.Background())
		for cs.Next(ctx) {
			if op := operationType(cs); op != "" && op != "insert" {
				continue
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
		if err := cs.Err(); err != nil && ctx.Err() == nil {
			errc <- unavailable("watch outbox", err)
		}
		close(errc)
	}()
	return wake, errc
}

// operationType is the current change event's operationType ("" when it
// cannot be read). The embedded engine reads it without decoding the event:
// decoding copied each event's document, ≈ 3 % of the CPU under load.
func operationType(cs lungo.IChangeStream) string {
	if ot, ok := cs.(interface{ OperationType() string }); ok {
		return ot.OperationType()
	}
	var change struct {
		Op string `bson:"operationType"`
	}
	if err := cs.Decode(&change); err != nil {
		return ""
	}
	return change.Op
}

// deleteNewestFirst deletes the documents matching filter. On the embedded
// engine it removes them newest first: lungo keeps a collection as a list and
// removing one entry re-indexes every entry after it, so deleting a drained
// backlog oldest-first costs O(k·n) while newest-first costs O(k·p), p being
// the few events still pending after it. Elsewhere it is DeleteMany.
func (s *Store) deleteNewestFirst(sc lungo.ISessionContext, coll string, filter bson.M) error {
	if ls, ok := sc.(*lungo.SessionContext); ok {
		if txn := ls.Transaction(); txn != nil {
			query, err := bsonkit.Transform(filter)
			if err != nil {
				return fmt.Errorf("delete from %s: %w", coll, err)
			}
			newestFirst, err := bsonkit.Transform(bson.D{{Key: "_id", Value: -1}})
			if err != nil {
				return fmt.Errorf("delete from %s: %w", coll, err)
			}
			_, err = txn.Delete(lungo.Handle{s.db.Name(), coll}, query, newestFirst, 0, 0)
			return err
		}
	}
	_, err := s.db.Collection(coll).DeleteMany(sc, filter)
	return err
}

// Canary records a canary event in the outbox: no pixel changes, but it
// travels the real path (outbox, relay, stream, gateways), so a gateway
// that stops seeing canaries knows the pipeline stopped flowing even when
// nobody is painting.
func (s *Store) Canary(ctx context.Context, tr Trace) (canvas.Event, error) {
	d := outboxDoc{
		ID: primitive.NewObjectID(), Canvas: s.opts.Canvas, Kind: string(canvas.KindCanary),
		Color: "#000000", CommittedAt: time.Now().UTC().Truncate(time.Millisecond),
		Trace: traceDoc(tr), State: statePending,
	}
	if _, err := s.db.Collection(cOutbox).InsertOne(ctx, d.doc()); err != nil {
		return canvas.Event{}, unavailable("insert canary", err)
	}
	return d.event()
}
