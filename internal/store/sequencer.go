package store

import (
	"context"
	"errors"
	"time"

	"github.com/256dpi/lungo"
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

// Pending returns up to limit unpublished events, lowest version first. That
// order publishes each pixel's versions in order (a version's predecessor
// committed before it and so is pending in the same read or already
// published), which keeps a client that starts from a version-less snapshot
// converging.
func (s *Store) Pending(ctx context.Context, limit int) ([]canvas.Event, error) {
	cur, err := s.db.Collection(cOutbox).Find(ctx, bson.M{"state": statePending},
		options.Find().SetSort(bson.D{{Key: "version", Value: 1}, {Key: "committedAt", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, unavailable("read pending events", err)
	}
	return decodeEvents(ctx, cur)
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

// Published returns the events published in epoch with from <= seq <= to,
// in sequence order (to repair a stream that lost its newest entries).
func (s *Store) Published(ctx context.Context, epoch string, from, to uint64) ([]canvas.Event, error) {
	cur, err := s.db.Collection(cOutbox).Find(ctx,
		bson.M{"state": statePublished, "epoch": epoch, "seq": bson.M{"$gte": from, "$lte": to}},
		options.Find().SetSort(bson.D{{Key: "seq", Value: 1}}))
	if err != nil {
		return nil, unavailable("read published events", err)
	}
	return decodeEvents(ctx, cur)
}

// Published marks describe events that are in the stream.
type Published struct {
	ID  string // outbox id
	Seq uint64
}

// MarkPublished records that events were appended to the stream at their
// sequence numbers, moving the sequencer from `from` to the last of them,
// in one transaction fenced by the lease: if holder lost the lease or the
// sequence moved, nothing is written and ErrLeaseLost is returned.
func (s *Store) MarkPublished(ctx context.Context, holder string, from canvas.Position, marks []Published, at time.Time) error {
	if len(marks) == 0 {
		return nil
	}
	ids := make([]primitive.ObjectID, len(marks))
	for i, m := range marks {
		oid, err := primitive.ObjectIDFromHex(m.ID)
		if err != nil {
			return canvas.Errorf(canvas.EInvalid, "outbox id %q: %v", m.ID, err)
		}
		ids[i] = oid
	}
	at = at.UTC()
	return s.txn(ctx, "mark published", func(sc lungo.ISessionContext) error {
		if _, err := s.checkLease(sc, holder, from); err != nil {
			return err
		}
		models := make([]mongo.WriteModel, len(marks))
		for i, m := range marks {
			models[i] = mongo.NewUpdateOneModel().SetFilter(bson.M{"_id": ids[i]}).SetUpdate(bson.M{"$set": bson.M{
				"state": statePublished, "epoch": from.Epoch, "seq": m.Seq, "publishedAt": at,
			}})
		}
		if _, err := s.db.Collection(cOutbox).BulkWrite(sc, models); err != nil {
			return err
		}
		if err := s.failpoint("mark:before-commit"); err != nil {
			return err
		}
		_, err := s.db.Collection(cSequencers).UpdateOne(sc, bson.M{"_id": s.opts.Canvas},
			bson.M{"$set": bson.M{"seq": marks[len(marks)-1].Seq}})
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
			bson.M{"$set": bson.M{"state": statePending}, "$unset": bson.M{"epoch": "", "seq": "", "publishedAt": ""}})
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
