package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/256dpi/lungo"
	"github.com/256dpi/lungo/bsonkit"
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

// seqDoc is the canvas's sequencer: the lease that makes one relay the only
// publisher, and the last published position.
type seqDoc struct {
	ID        string    `bson:"_id"`
	Holder    string    `bson:"holder"`
	ExpiresAt time.Time `bson:"expiresAt"`
	Epoch     string    `bson:"epoch"`
	Seq       uint64    `bson:"seq"`
}

// Lease is a held sequencer lease and the position it publishes from.
type Lease struct {
	Holder    string
	ExpiresAt time.Time
	canvas.Position
}

// SequencerState is the sequencer as others see it (for health pages).
type SequencerState struct {
	Holder    string
	ExpiresAt time.Time
	canvas.Position
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
	return SequencerState{Holder: d.Holder, ExpiresAt: d.ExpiresAt, Position: canvas.Position{Epoch: d.Epoch, Seq: d.Seq}}, err
}

// AcquireLease takes or renews the lease for holder for ttl. ok is false when
// another holder's lease is still valid.
func (s *Store) AcquireLease(ctx context.Context, holder string, ttl time.Duration) (l Lease, ok bool, err error) {
	err = s.txn(ctx, "acquire lease", func(sc lungo.ISessionContext) error {
		ok = false
		now := s.opts.Now()
		var d seqDoc
		err := s.db.Collection(cSequencers).FindOne(sc, bson.M{"_id": s.opts.Canvas}).Decode(&d)
		switch {
		case errors.Is(err, mongo.ErrNoDocuments):
			d = seqDoc{ID: s.opts.Canvas}
		case err != nil:
			return err
		case d.Holder != holder && d.ExpiresAt.After(now):
			l = Lease{Holder: d.Holder, ExpiresAt: d.ExpiresAt, Position: canvas.Position{Epoch: d.Epoch, Seq: d.Seq}}
			return nil
		}
		d.Holder, d.ExpiresAt = holder, now.Add(ttl)
		_, err = s.db.Collection(cSequencers).ReplaceOne(sc, bson.M{"_id": s.opts.Canvas}, d, options.Replace().SetUpsert(true))
		if err != nil {
			return err
		}
		ok = true
		l = Lease{Holder: holder, ExpiresAt: d.ExpiresAt, Position: canvas.Position{Epoch: d.Epoch, Seq: d.Seq}}
		return nil
	})
	return l, ok, err
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

// checkLease loads the sequencer inside a transaction and fails with
// ErrLeaseLost unless holder holds it at position at.
func (s *Store) checkLease(sc lungo.ISessionContext, holder string, at canvas.Position) (seqDoc, error) {
	var d seqDoc
	if err := s.db.Collection(cSequencers).FindOne(sc, bson.M{"_id": s.opts.Canvas}).Decode(&d); err != nil {
		if errors.Is(err, mongo.ErrNoDocuments) {
			return d, ErrLeaseLost
		}
		return d, err
	}
	if d.Holder != holder || !d.ExpiresAt.After(s.opts.Now()) || d.Epoch != at.Epoch || d.Seq != at.Seq {
		return d, ErrLeaseLost
	}
	return d, nil
}

// Pending returns up to limit unpublished events, lowest version first.
func (s *Store) Pending(ctx context.Context, limit int) ([]canvas.Event, error) {
	cur, err := s.db.Collection(cOutbox).Find(ctx, bson.M{"state": statePending},
		options.Find().SetSort(bson.D{{Key: "version", Value: 1}, {Key: "committedAt", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, unavailable("read pending events", err)
	}
	return decodeEvents(ctx, cur)
}

// Claim tags every pending event with a new claim id, in one transaction
// fenced by the lease, and returns them lowest version first. Tagging by one
// predicate costs one collection scan on the embedded engine, where per-id
// updates would cost one scan each. Events claimed by an earlier (dead or
// deposed) leader and never marked are simply claimed again.
//
// Lowest version first publishes each pixel's versions in order, which keeps
// a client that starts from a version-less (binary) snapshot converging.
func (s *Store) Claim(ctx context.Context, holder string, at canvas.Position) (claim string, events []canvas.Event, err error) {
	claim = primitive.NewObjectID().Hex()
	err = s.txn(ctx, "claim pending events", func(sc lungo.ISessionContext) error {
		events = nil
		if _, err := s.checkLease(sc, holder, at); err != nil {
			return err
		}
		coll := s.db.Collection(cOutbox)
		// Look before tagging: the embedded engine copies the collection and
		// the oplog for an update even when it matches nothing, and the relay
		// often wakes to find everything already claimed.
		if err := coll.FindOne(sc, bson.M{"state": statePending}).Err(); err != nil {
			if errors.Is(err, mongo.ErrNoDocuments) {
				return nil
			}
			return err
		}
		res, err := coll.UpdateMany(sc, bson.M{"state": statePending}, bson.M{"$set": bson.M{"claim": claim}})
		if err != nil || res.MatchedCount == 0 {
			return err
		}
		cur, err := coll.Find(sc, bson.M{"claim": claim},
			options.Find().SetSort(bson.D{{Key: "version", Value: 1}, {Key: "committedAt", Value: 1}}))
		if err != nil {
			return err
		}
		events, err = decodeEvents(sc, cur)
		return err
	})
	return claim, events, err
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
	ID          string    `bson:"_id"`
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
		bson.M{"epoch": epoch, "last": bson.M{"$gte": from}, "first": bson.M{"$lte": to}},
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
	cur, err = s.db.Collection(cOutbox).Find(ctx, bson.M{"_id": bson.M{"$in": oids}, "state": statePublished, "epoch": epoch})
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

// Batch is a run of events appended to the stream at from.Seq+1, from.Seq+2, …
// in the order of IDs. Claim, when set, is the claim they were taken under:
// they are then marked by that one predicate rather than id by id.
type Batch struct {
	Claim string
	IDs   []string
}

// MarkPublished records that the batch was appended to the stream after
// position from, moving the sequencer to its last sequence number, in one
// transaction fenced by the lease: if holder lost the lease or the sequence
// moved, nothing is written and ErrLeaseLost is returned.
func (s *Store) MarkPublished(ctx context.Context, holder string, from canvas.Position, b Batch, at time.Time) error {
	if len(b.IDs) == 0 {
		return nil
	}
	var filter bson.M
	if b.Claim != "" {
		filter = bson.M{"claim": b.Claim}
	} else {
		oids := make([]primitive.ObjectID, len(b.IDs))
		for i, id := range b.IDs {
			oid, err := primitive.ObjectIDFromHex(id)
			if err != nil {
				return canvas.Errorf(canvas.EInvalid, "outbox id %q: %v", id, err)
			}
			oids[i] = oid
		}
		filter = bson.M{"_id": bson.M{"$in": oids}}
	}
	at = at.UTC()
	last := from.Seq + uint64(len(b.IDs))
	return s.txn(ctx, "mark published", func(sc lungo.ISessionContext) error {
		if _, err := s.checkLease(sc, holder, from); err != nil {
			return err
		}
		coll := s.db.Collection(cOutbox)
		if s.opts.PruneOnPublish {
			if err := s.deleteNewestFirst(sc, cOutbox, filter); err != nil {
				return err
			}
		} else {
			_, err := coll.UpdateMany(sc, filter, bson.M{
				"$set":   bson.M{"state": statePublished, "epoch": from.Epoch, "publishedAt": at},
				"$unset": bson.M{"claim": ""},
			})
			if err != nil {
				return err
			}
			_, err = s.db.Collection(cBatches).InsertOne(sc, batchDoc{
				ID: fmt.Sprintf("%s/%d", from.Epoch, from.Seq+1), Epoch: from.Epoch,
				First: from.Seq + 1, Last: last, IDs: b.IDs, PublishedAt: at,
			})
			if err != nil {
				return err
			}
		}
		if err := s.failpoint("mark:before-commit"); err != nil {
			return err
		}
		_, err := s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas},
			bson.M{"$set": bson.M{"seq": last}})
		return err
	})
}

// StartEpoch moves the sequencer to a new epoch at sequence 0 and returns the
// events published since republishSince to the pending state, so the relay
// publishes them again into the new stream. Fenced by the lease like
// MarkPublished.
func (s *Store) StartEpoch(ctx context.Context, holder string, from canvas.Position, epoch string, republishSince time.Time) (requeued int64, err error) {
	err = s.txn(ctx, "start epoch", func(sc lungo.ISessionContext) error {
		if _, err := s.checkLease(sc, holder, from); err != nil {
			return err
		}
		res, err := s.db.Collection(cOutbox).UpdateMany(sc,
			bson.M{"state": statePublished, "publishedAt": bson.M{"$gte": republishSince.UTC()}},
			bson.M{"$set": bson.M{"state": statePending}, "$unset": bson.M{"epoch": "", "publishedAt": ""}})
		if err != nil {
			return err
		}
		requeued = res.ModifiedCount
		_, err = s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas},
			bson.M{"$set": bson.M{"epoch": epoch, "seq": uint64(0)}})
		return err
	})
	return requeued, err
}

// WatchOutbox sends on the returned channel (without blocking, coalescing)
// whenever the outbox changes, until ctx ends or the change stream fails;
// the error channel then receives why. It watches with an empty pipeline and
// no filter: lungo panics on pipelines, and a wake-up is cheap.
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
		Trace: traceDoc{TraceParent: tr.TraceParent, TraceState: tr.TraceState}, State: statePending,
	}
	if _, err := s.db.Collection(cOutbox).InsertOne(ctx, d); err != nil {
		return canvas.Event{}, unavailable("insert canary", err)
	}
	return d.event()
}
