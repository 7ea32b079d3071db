package store

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// errNotPlaced answers a placement whose batch never ran to an answer (it
// panicked); nothing of it was committed by this call.
var errNotPlaced = errors.New("placement was not written")

// placeReq is one caller's placement and, once its batch ran, its answer.
type placeReq struct {
	ctx     context.Context
	p       canvas.Placement
	idemKey string
	idem    idemRef // where idemKey is remembered; zero without a key
	hash    string
	tr      Trace

	ev       canvas.Event
	replayed bool
	err      error

	dupOf *placeReq // an earlier request in the same batch with the same key
}

// Place paints one pixel and records its outbox event in one transaction.
// With a non-empty idemKey (ScopedKey: a client's key), a repeated call with
// the same placement returns the first result (replayed=true) and writes
// nothing; the same key with another placement is a conflict. See
// idempotency.go for how long keys are remembered.
//
// With Options.GroupCommit, concurrent calls share transactions (see
// groupCommit): each still gets its own answer, and a transaction that fails
// fails every call in it with nothing of any of them written.
func (s *Store) Place(ctx context.Context, p canvas.Placement, idemKey string, tr Trace) (canvas.Event, bool, error) {
	r := &placeReq{ctx: ctx, p: p, idemKey: idemKey, tr: tr, hash: placementHash(p), err: errNotPlaced}
	if idemKey != "" {
		r.idem = s.idemRefFor(idemKey)
	}
	if s.places != nil {
		if err := s.places.do(ctx, r); err != nil {
			return canvas.Event{}, false, unavailable("place pixel", err)
		}
	} else {
		s.placeBatch(ctx, []*placeReq{r})
	}
	if r.err != nil {
		return canvas.Event{}, false, r.err
	}
	return r.ev, r.replayed, nil
}

// runPlaces is the group-commit batch runner: it leaves out callers that gave
// up while queued, and runs the batch detached from the leader's context so
// that the leader going away does not fail the others.
func (s *Store) runPlaces(batch []*placeReq) {
	live := batch[:0:0]
	var ctx context.Context
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.err = unavailable("place pixel", err)
			continue
		}
		if ctx == nil {
			ctx = r.ctx
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	s.placeBatch(context.WithoutCancel(ctx), live)
}

// tileWrite collects a batch's placements in one tile: one update per tile
// per batch, whatever the number of placements in it.
type tileWrite struct {
	id     string
	tx, ty int
	pixels map[string]*pixelWrite // by key inside the tile
}

// pixelWrite is the placements of one pixel in a batch, in order: the pixel's
// version goes up by their number and its colour is the last one's.
type pixelWrite struct {
	reqs []*placeReq
}

// placeBatch writes reqs in one transaction, answering each of them: as if
// they had run one after another in slice order, except that a failed
// transaction answers every one of them with its error.
func (s *Store) placeBatch(ctx context.Context, reqs []*placeReq) {
	var versions map[*placeReq]int64
	err := s.txn(ctx, "place pixel", func(sc lungo.ISessionContext) error {
		// A retried attempt starts over: nothing of the aborted one counts.
		for _, r := range reqs {
			r.ev, r.replayed, r.err, r.dupOf = canvas.Event{}, false, nil, nil
		}
		writes, buckets, err := s.resolveIdempotency(sc, reqs)
		if err != nil || len(writes) == 0 {
			return err
		}
		now := s.opts.Now().UTC().Truncate(time.Millisecond)
		versions, err = s.writeTiles(sc, writes, now)
		if err != nil {
			return err
		}
		if err := s.failpoint("place:after-pixel"); err != nil {
			return err
		}
		docs := make([]any, len(writes))
		outbox := make([]outboxDoc, len(writes))
		for i, r := range writes {
			outbox[i] = outboxDoc{
				ID: primitive.NewObjectID(), Canvas: s.opts.Canvas, Kind: string(canvas.KindPixel),
				GX: r.p.GX, GY: r.p.GY, Color: r.p.Color.String(), Version: versions[r], CommittedAt: now,
				Trace: traceDoc{TraceParent: r.tr.TraceParent, TraceState: r.tr.TraceState},
				State: statePending,
			}
			docs[i] = outbox[i].doc()
		}
		if _, err := s.db.Collection(cOutbox).InsertMany(sc, docs); err != nil {
			return err
		}
		for i, r := range writes {
			if r.ev, err = outbox[i].event(); err != nil {
				return err
			}
		}
		if err := s.rememberKeys(sc, writes, buckets, now); err != nil {
			return err
		}
		for _, r := range reqs {
			if d := r.dupOf; d != nil {
				r.ev, r.replayed, r.err = replay(d.hash, d.ev, r.hash)
			}
		}
		return nil
	})
	if err != nil {
		for _, r := range reqs {
			r.ev, r.replayed, r.err = canvas.Event{}, false, err
		}
	}
}

// replay answers a request whose key already answered ev for the placement
// with hash firstHash.
func replay(firstHash string, ev canvas.Event, hash string) (canvas.Event, bool, error) {
	if firstHash != hash {
		return canvas.Event{}, false, canvas.Errorf(canvas.EConflict, "Idempotency-Key was already used for another pixel")
	}
	return canvas.Event{ID: ev.ID, Kind: canvas.KindPixel, GX: ev.GX, GY: ev.GY, Color: ev.Color, Version: ev.Version, CommittedAt: ev.CommittedAt}, true, nil
}

// writeTiles paints writes with one upsert per tile and returns each
// placement's new pixel version.
func (s *Store) writeTiles(sc lungo.ISessionContext, writes []*placeReq, now time.Time) (map[*placeReq]int64, error) {
	tiles := map[string]*tileWrite{}
	for _, r := range writes {
		id, tx, ty, key := tileOf(s.opts.Canvas, r.p.GX, r.p.GY)
		t := tiles[id]
		if t == nil {
			t = &tileWrite{id: id, tx: tx, ty: ty, pixels: map[string]*pixelWrite{}}
			tiles[id] = t
		}
		pw := t.pixels[key]
		if pw == nil {
			pw = &pixelWrite{}
			t.pixels[key] = pw
		}
		pw.reqs = append(pw.reqs, r)
	}
	ids := make([]string, 0, len(tiles))
	for id := range tiles {
		ids = append(ids, id)
	}
	sort.Strings(ids) // the same order in every transaction
	versions := make(map[*placeReq]int64, len(writes))
	for _, id := range ids {
		t := tiles[id]
		set, inc, proj := bson.M{}, bson.M{}, bson.M{}
		for key, pw := range t.pixels {
			set["p."+key+".c"] = pw.reqs[len(pw.reqs)-1].p.Color.String()
			set["p."+key+".t"] = now
			inc["p."+key+".v"] = int64(len(pw.reqs))
			proj["p."+key+".v"] = 1
		}
		if err := s.conflictWrite(sc, cPixels, t.id); err != nil {
			return nil, err
		}
		var tile tileDoc
		err := s.db.Collection(cPixels).FindOneAndUpdate(sc,
			bson.M{"_id": t.id},
			bson.M{
				"$set":         set,
				"$inc":         inc,
				"$setOnInsert": bson.M{"canvas": s.opts.Canvas, "tx": t.tx, "ty": t.ty},
			},
			// Only the new versions come back: decoding a whole tile (up
			// to 256 pixels) per update cost more than the update itself.
			options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After).SetProjection(proj),
		).Decode(&tile)
		if err != nil {
			return nil, err
		}
		for key, pw := range t.pixels {
			last := tile.P[key].Version
			for i, r := range pw.reqs {
				versions[r] = last - int64(len(pw.reqs)-1-i)
			}
		}
	}
	return versions, nil
}
