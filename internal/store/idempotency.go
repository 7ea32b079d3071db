package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/256dpi/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Idempotency keys are remembered in a fixed number of bucket documents
// (Options.IdempotencyBuckets), each a map from a key's hash to the answer
// it got. One document per key made the embedded engine slower with every
// key stored, since it scans and copies a whole collection per operation
// (30,000 keys: 1.5 ms → 101 ms a keyed write); a fixed set of small
// documents keeps every keyed write at the same cost, and on MongoDB spreads
// concurrent writers over many documents.
//
// Keys belong to a client (ScopedKey): the same key from two clients is two
// keys. Each client holds at most Options.IdempotencyKeysPerClient of them:
// a client's keys spread over the buckets, and a bucket keeps a client's
// newest ⌈keys/buckets⌉, dropping its oldest when a newer one arrives.
// A bucket also keeps at most maxBucketKeys keys in all (oldest dropped
// first), which bounds the whole store whatever the number of clients, and
// drops keys older than Options.IdempotencyTTL whenever it is written.

// maxBucketKeys bounds one bucket: with 256 buckets, 262,144 keys in all
// (about 35 MiB on the embedded engine).
const maxBucketKeys = 1024

// keySep separates the client from the key in a scoped key.
const keySep = "\x1f"

// ScopedKey is the Idempotency-Key key of client as Place takes it: keys are
// remembered, replayed and bounded per client. A key without a client
// (no separator) belongs to the anonymous client "".
func ScopedKey(client, key string) string { return client + keySep + key }

// idemBucket is one bucket document.
type idemBucket struct {
	ID string               `bson:"_id"`
	K  map[string]idemEntry `bson:"k"`
}

// idemEntry is the answer a key got.
type idemEntry struct {
	Client    string    `bson:"c"` // hash of the client
	Hash      string    `bson:"h"` // placementHash of the first use
	EventID   string    `bson:"e"`
	GX        int       `bson:"x"`
	GY        int       `bson:"y"`
	Color     string    `bson:"col"`
	Version   int64     `bson:"v"`
	Committed time.Time `bson:"t"`
	CreatedAt time.Time `bson:"a"`
}

// idemRef locates a scoped key: its bucket document, its field in it, and
// its client's tag.
type idemRef struct {
	bucket string
	field  string
	client string
}

func (s *Store) idemRefFor(scoped string) idemRef {
	client, _, ok := strings.Cut(scoped, keySep)
	if !ok {
		client = ""
	}
	h := sha256.Sum256([]byte(scoped))
	c := sha256.Sum256([]byte(client))
	n := binary.BigEndian.Uint32(h[:4]) % uint32(s.opts.IdempotencyBuckets)
	return idemRef{
		bucket: fmt.Sprintf("%s/%d", s.opts.Canvas, n),
		field:  hex.EncodeToString(h[4:14]),
		client: hex.EncodeToString(c[:6]),
	}
}

// resolveIdempotency answers the requests whose key was used before (replay
// or conflict) and returns the ones to write, in order, with the buckets it
// read. A key repeated inside the batch is answered from its first use once
// that is written.
func (s *Store) resolveIdempotency(sc lungo.ISessionContext, reqs []*placeReq) ([]*placeReq, map[string]*idemBucket, error) {
	writes := make([]*placeReq, 0, len(reqs))
	var (
		first   map[string]*placeReq // by bucket+field
		buckets map[string]*idemBucket
	)
	cutoff := s.opts.Now().Add(-s.opts.IdempotencyTTL)
	for _, r := range reqs {
		if r.idemKey == "" {
			writes = append(writes, r)
			continue
		}
		id := r.idem.bucket + "#" + r.idem.field
		if d, ok := first[id]; ok {
			r.dupOf = d
			continue
		}
		b, ok := buckets[r.idem.bucket]
		if !ok {
			b = &idemBucket{ID: r.idem.bucket}
			err := s.db.Collection(cIdemKeys).FindOne(sc, bson.M{"_id": r.idem.bucket}).Decode(b)
			if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
				return nil, nil, err
			}
			if buckets == nil {
				buckets = map[string]*idemBucket{}
			}
			buckets[r.idem.bucket] = b
		}
		if prior, ok := b.K[r.idem.field]; ok && prior.CreatedAt.After(cutoff) {
			c, _ := canvas.ParseColor(prior.Color)
			ev := canvas.Event{ID: prior.EventID, Kind: canvas.KindPixel, GX: prior.GX, GY: prior.GY, Color: c, Version: prior.Version, CommittedAt: prior.Committed}
			r.ev, r.replayed, r.err = replay(prior.Hash, ev, r.hash)
			continue
		}
		if first == nil {
			first = map[string]*placeReq{}
		}
		first[id] = r
		writes = append(writes, r)
	}
	return writes, buckets, nil
}

// rememberKeys records the answers of the keyed writes: one update per
// bucket, which also drops what the bucket must no longer hold (expired
// keys, a client's oldest past its share, the oldest past maxBucketKeys).
func (s *Store) rememberKeys(sc lungo.ISessionContext, writes []*placeReq, buckets map[string]*idemBucket, now time.Time) error {
	added := map[string]map[string]idemEntry{}
	for _, r := range writes {
		if r.idemKey == "" {
			continue
		}
		if added[r.idem.bucket] == nil {
			added[r.idem.bucket] = map[string]idemEntry{}
		}
		added[r.idem.bucket][r.idem.field] = idemEntry{
			Client: r.idem.client, Hash: r.hash, EventID: r.ev.ID, GX: r.ev.GX, GY: r.ev.GY,
			Color: r.ev.Color.String(), Version: r.ev.Version, Committed: r.ev.CommittedAt, CreatedAt: now,
		}
	}
	perClient := max(1, (s.opts.IdempotencyKeysPerClient+s.opts.IdempotencyBuckets-1)/s.opts.IdempotencyBuckets)
	cutoff := now.Add(-s.opts.IdempotencyTTL)
	ids := make([]string, 0, len(added))
	for id := range added {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same order in every transaction
	for _, id := range ids {
		set, unset := bson.M{}, bson.M{}
		for f, e := range added[id] {
			set["k."+f] = e
		}
		for _, f := range evictions(buckets[id].K, added[id], cutoff, perClient) {
			unset["k."+f] = ""
		}
		update := bson.M{"$set": set}
		if len(unset) > 0 {
			update["$unset"] = unset
		}
		_, err := s.db.Collection(cIdemKeys).UpdateOne(sc, bson.M{"_id": id}, update, options.Update().SetUpsert(true))
		if err != nil {
			if mongo.IsDuplicateKeyError(err) || lungo.IsUniquenessError(err) {
				// A concurrent transaction created the bucket; retrying
				// reads it.
				return mongo.CommandError{Labels: []string{"TransientTransactionError"}, Message: "idempotency bucket raced"}
			}
			return err
		}
	}
	return nil
}

// evictions lists the fields of old (a bucket before the batch) to drop
// once added joins it: expired entries, then each adding client's oldest
// beyond perClient, then the oldest beyond maxBucketKeys.
func evictions(old, added map[string]idemEntry, cutoff time.Time, perClient int) []string {
	type kept struct {
		field string
		e     idemEntry
	}
	var out []string
	var live []kept
	for f, e := range old {
		if _, replaced := added[f]; replaced {
			continue // an expired key used again: overwritten, not dropped
		}
		if !e.CreatedAt.After(cutoff) {
			out = append(out, f)
			continue
		}
		live = append(live, kept{f, e})
	}
	// Oldest first; the field breaks ties so every replica of the decision
	// is the same.
	slices.SortFunc(live, func(a, b kept) int {
		if c := a.e.CreatedAt.Compare(b.e.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.field, b.field)
	})
	newBy := map[string]int{}
	for _, e := range added {
		newBy[e.Client]++
	}
	oldBy := map[string]int{}
	for _, k := range live {
		oldBy[k.e.Client]++
	}
	dropped := map[string]bool{}
	for _, k := range live {
		c := k.e.Client
		if n, adding := newBy[c]; adding && oldBy[c]+n > perClient {
			dropped[k.field] = true
			oldBy[c]--
			out = append(out, k.field)
		}
	}
	total := len(added)
	for _, k := range live {
		if !dropped[k.field] {
			total++
		}
	}
	for _, k := range live {
		if total <= maxBucketKeys {
			break
		}
		if !dropped[k.field] {
			dropped[k.field] = true
			out = append(out, k.field)
			total--
		}
	}
	return out
}
