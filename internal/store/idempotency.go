package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
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
// keys. A client's keys fall into idemGroups groups by their hash, and a
// group lives in the bucket its (client, group) hashes to, so where a key
// is stored and looked up depends on the client and the key alone. It must
// not depend on a setting: the number of groups followed
// IdempotencyKeysPerClient below 64, so a restart with another value (or
// two api processes on MongoDB configured differently) looked a retried key
// up in another bucket, missed its first answer and wrote it again (issue
// 28). Each group keeps its client's newest ⌈keys/64⌉, dropping its oldest
// when a newer one arrives, so a client holds at most
// IdempotencyKeysPerClient rounded up to a multiple of 64 (at least 64).
// A key outlives, on average, the client's next IdempotencyKeysPerClient
// keys, and at least the next ⌈keys/64⌉ of its group; a client with a few
// hundred keys (of the default 1024) loses none. Counting per group needs
// no per-client document, which on MongoDB would make each client's
// concurrent writes conflict. A bucket also keeps at most maxBucketKeys
// keys in all (oldest dropped first), which bounds the whole store whatever
// the number of clients, and drops keys older than Options.IdempotencyTTL
// whenever it is written.

// maxBucketKeys bounds one bucket: with 256 buckets, 262,144 keys in all
// (about 35 MiB on the embedded engine).
const maxBucketKeys = 1024

// idemGroups is how many groups a client's keys are counted in, whatever
// IdempotencyKeysPerClient says (the group picks a key's bucket).
const idemGroups = 64

// idemGrouping returns how many groups a client's keys fall into and how
// many each keeps: groups × perGroup is IdempotencyKeysPerClient rounded up
// to a multiple of the groups.
func (s *Store) idemGrouping() (groups, perGroup int) {
	groups = idemGroups
	if s.idemGroupsBySetting {
		groups = max(1, min(idemGroups, s.opts.IdempotencyKeysPerClient))
	}
	return groups, (s.opts.IdempotencyKeysPerClient + groups - 1) / groups
}

// keySep separates the client from the key in a scoped key.
const keySep = "\x1f"

// ScopedKey is the Idempotency-Key key of client as Place takes it: keys are
// remembered, replayed and bounded per client. A key without a client
// (no separator) belongs to the anonymous client "".
func ScopedKey(client, key string) string { return client + keySep + key }

// idemBucket is one bucket document: key field → packed idemEntry. One
// string per key rather than a sub-document: the embedded engine marshals
// a whole document twice on every update, so its size is what a keyed
// write costs.
type idemBucket struct {
	ID string            `bson:"_id"`
	K  map[string]string `bson:"k"`
}

// idemEntry is the answer a key got.
type idemEntry struct {
	Client    string // hash of the client
	Group     int    // the client's group the key counts in
	CreatedAt time.Time
	Hash      string // placementHash of the first use
	EventID   string
	GX, GY    int
	Color     string
	Version   int64
	Committed time.Time
}

// pack renders e as "client|group|created|hash|event|gx|gy|color|version|committed"
// (times in Unix nanoseconds).
func (e idemEntry) pack() string {
	return strings.Join([]string{e.Client, strconv.Itoa(e.Group), strconv.FormatInt(e.CreatedAt.UnixNano(), 10), e.Hash, e.EventID,
		strconv.Itoa(e.GX), strconv.Itoa(e.GY), e.Color, strconv.FormatInt(e.Version, 10), strconv.FormatInt(e.Committed.UnixNano(), 10)}, "|")
}

// unpackIdem reads what pack wrote; ok is false for anything else.
func unpackIdem(s string) (e idemEntry, ok bool) {
	f := strings.Split(s, "|")
	if len(f) != 10 {
		return e, false
	}
	var err [6]error
	var created, committed int64
	e.Client, e.Hash, e.EventID, e.Color = f[0], f[3], f[4], f[7]
	e.Group, err[0] = strconv.Atoi(f[1])
	created, err[1] = strconv.ParseInt(f[2], 10, 64)
	e.GX, err[2] = strconv.Atoi(f[5])
	e.GY, err[3] = strconv.Atoi(f[6])
	e.Version, err[4] = strconv.ParseInt(f[8], 10, 64)
	committed, err[5] = strconv.ParseInt(f[9], 10, 64)
	for _, x := range err {
		if x != nil {
			return e, false
		}
	}
	e.CreatedAt, e.Committed = time.Unix(0, created).UTC(), time.Unix(0, committed).UTC()
	return e, true
}

// idemRef locates a scoped key: its bucket document, its field in it, its
// client's tag and the client's group it counts in.
type idemRef struct {
	bucket string
	field  string
	client string
	group  int
}

func (s *Store) idemRefFor(scoped string) idemRef {
	client, _, ok := strings.Cut(scoped, keySep)
	if !ok {
		client = ""
	}
	h := sha256.Sum256([]byte(scoped))
	c := sha256.Sum256([]byte(client))
	groups, _ := s.idemGrouping()
	group := int(binary.BigEndian.Uint32(h[:4]) % uint32(groups))
	b := sha256.Sum256(fmt.Appendf(c[:8:8], "/%d", group))
	n := binary.BigEndian.Uint32(b[:4]) % uint32(s.opts.IdempotencyBuckets)
	return idemRef{
		bucket: fmt.Sprintf("%s/%d", s.opts.Canvas, n),
		field:  hex.EncodeToString(h[4:14]),
		client: hex.EncodeToString(c[:6]),
		group:  group,
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
		if prior, ok := unpackIdem(b.K[r.idem.field]); ok && prior.CreatedAt.After(cutoff) {
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
			Client: r.idem.client, Group: r.idem.group, Hash: r.hash, EventID: r.ev.ID, GX: r.ev.GX, GY: r.ev.GY,
			Color: r.ev.Color.String(), Version: r.ev.Version, Committed: r.ev.CommittedAt, CreatedAt: now,
		}
	}
	_, perGroup := s.idemGrouping()
	cutoff := now.Add(-s.opts.IdempotencyTTL)
	ids := make([]string, 0, len(added))
	for id := range added {
		ids = append(ids, id)
	}
	slices.Sort(ids) // the same order in every transaction
	for _, id := range ids {
		set, unset := bson.M{}, bson.M{}
		for f, e := range added[id] {
			set["k."+f] = e.pack()
		}
		for _, f := range evictions(buckets[id].K, added[id], cutoff, perGroup) {
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
// once added joins it: expired entries, then the oldest of each group
// being added to beyond perGroup, then the oldest beyond maxBucketKeys.
func evictions(old map[string]string, added map[string]idemEntry, cutoff time.Time, perGroup int) []string {
	type kept struct {
		field string
		e     idemEntry
	}
	var out []string
	var live []kept
	for f, packed := range old {
		if _, replaced := added[f]; replaced {
			continue // an expired key used again: overwritten, not dropped
		}
		e, ok := unpackIdem(packed)
		if !ok || !e.CreatedAt.After(cutoff) {
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
	type group struct {
		client string
		n      int
	}
	newBy := map[group]int{}
	for _, e := range added {
		newBy[group{e.Client, e.Group}]++
	}
	oldBy := map[group]int{}
	for _, k := range live {
		oldBy[group{k.e.Client, k.e.Group}]++
	}
	dropped := map[string]bool{}
	for _, k := range live {
		g := group{k.e.Client, k.e.Group}
		if n, adding := newBy[g]; adding && oldBy[g]+n > perGroup {
			dropped[k.field] = true
			oldBy[g]--
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
