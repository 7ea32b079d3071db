package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/third_party/lungo"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/pixelflow/pixelflow/internal/store"
)

// openFileEngine opens a lungo engine on a file store at path.
func openFileEngine(t *testing.T, path string, fopts lungo.FileStoreOptions) (lungo.IClient, *lungo.Engine, *lungo.FileStore) {
	t.Helper()
	fs := lungo.NewFileStoreWith(path, 0o644, fopts)
	client, engine, err := lungo.Open(context.Background(), lungo.Options{
		Store:        fs,
		MinOplogSize: 16,
		MaxOplogSize: 128,
		MinOplogAge:  time.Nanosecond,
		MaxOplogAge:  time.Minute,
	})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return client, engine, fs
}

// dumpCatalog renders every namespace's documents (in their order, as
// BSON) and index configurations, sorted by namespace: two catalogs with
// the same dump hold the same data.
func dumpCatalog(t *testing.T, c *lungo.Catalog) string {
	t.Helper()
	var names []string
	byName := map[string]lungo.Handle{}
	for h := range c.Namespaces {
		names = append(names, h.String())
		byName[h.String()] = h
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		coll := c.Namespaces[byName[name]]
		fmt.Fprintf(&b, "== %s\n", name)
		var idx []string
		for n, i := range coll.Indexes {
			cfg := i.Config()
			idx = append(idx, fmt.Sprintf("%s %v unique=%v partial=%v expiry=%s", n, *cfg.Key, cfg.Unique, cfg.Partial, cfg.Expiry))
		}
		sort.Strings(idx)
		for _, s := range idx {
			fmt.Fprintf(&b, "index %s\n", s)
		}
		for _, d := range coll.Documents.List {
			raw, err := bson.Marshal(d)
			if err != nil {
				t.Fatalf("marshal %v: %v", d, err)
			}
			fmt.Fprintf(&b, "%x\n", raw)
		}
	}
	return b.String()
}

// TestJournalReplaysEveryKindOfChange is lungo patch 10's model test: a
// seeded random mix of inserts, nested $set and $unset, $inc, $push,
// replacements with fields in another order, deletes, upserts, collections
// and indexes created and dropped, with compaction now and then. After each
// round the engine is closed and the file opened again, and its catalog
// must be what the engine held, document order included. It fails when a
// replay sets a new field anywhere but the end of its document, or when a
// document deleted and inserted again in one transaction (which moves it
// to the end) is recorded as updated in place.
func TestJournalReplaysEveryKindOfChange(t *testing.T) {
	ctx := context.Background()
	for _, compactAt := range []int64{-1, 1 << 30} {
		t.Run(fmt.Sprintf("compactAt=%d", compactAt), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "j.lungo")
			rng := rand.New(rand.NewPCG(1, uint64(compactAt)))
			var compactions, records, whole int64
			for round := range 12 {
				client, engine, fs := openFileEngine(t, path, lungo.FileStoreOptions{CompactAt: compactAt})
				db := client.Database("d")
				for range 40 {
					randomChange(ctx, t, rng, db)
				}
				want := dumpCatalog(t, engine.Catalog())
				st := fs.Stats()
				compactions, records, whole = compactions+st.Compactions, records+st.Records, whole+st.WholeNamespaces
				engine.Close()
				_, engine, _ = openFileEngine(t, path, lungo.FileStoreOptions{CompactAt: compactAt})
				got := dumpCatalog(t, engine.Catalog())
				engine.Close()
				if got != want {
					t.Fatalf("round %d: the reopened catalog differs:\n%s", round, firstDifference(want, got))
				}
			}
			t.Logf("%d records, %d namespaces in full, %d compactions", records, whole, compactions)
			if records < 300 {
				t.Fatalf("only %d records: the changes did not reach the journal", records)
			}
			if compactAt < 0 && compactions < 12 {
				t.Fatalf("%d compactions with CompactAt %d: compaction not exercised", compactions, compactAt)
			}
			if whole > records/4 {
				t.Fatalf("%d of %d records held a namespace in full: the per-document diff is not used", whole, records)
			}
		})
	}
}

func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\nwant %.200s\ngot  %.200s", i, a, b)
		}
	}
	return "(none)"
}

func randomChange(ctx context.Context, t *testing.T, rng *rand.Rand, db lungo.IDatabase) {
	t.Helper()
	colls := []string{"a", "b", "c"}
	coll := db.Collection(colls[rng.IntN(len(colls))])
	id := rng.IntN(30)
	var err error
	switch op := rng.IntN(100); {
	case op < 20:
		_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprint("x", rng.IntN(1000))}, {Key: "n", Value: int32(id)},
			{Key: "sub", Value: bson.D{{Key: "a", Value: "one"}, {Key: "deep", Value: bson.D{{Key: "x", Value: 1.5}}}}}})
		if mongo.IsDuplicateKeyError(err) {
			err = nil
		}
	case op < 45:
		set := bson.D{{Key: fmt.Sprintf("sub.k%d", rng.IntN(8)), Value: rng.IntN(5)}}
		if rng.IntN(3) == 0 {
			set = append(set, bson.E{Key: "sub.deep.y.z", Value: "made"}) // creates documents along the way
		}
		_, err = coll.UpdateOne(ctx, bson.M{"_id": fmt.Sprint("u", id)}, bson.D{{Key: "$set", Value: set}}, options.Update().SetUpsert(true))
	case op < 55:
		_, err = coll.UpdateOne(ctx, bson.M{"_id": fmt.Sprint("u", id)}, bson.M{"$unset": bson.M{fmt.Sprintf("sub.k%d", rng.IntN(8)): "", "sub.deep": ""}})
	case op < 62:
		_, err = coll.UpdateMany(ctx, bson.M{}, bson.M{"$inc": bson.M{"count": 1}})
	case op < 67:
		_, err = coll.UpdateOne(ctx, bson.M{"_id": fmt.Sprint("u", id)}, bson.M{"$push": bson.M{"list": bson.D{{Key: "v", Value: id}}}})
	case op < 75:
		// fields in another order than the document had
		_, err = coll.ReplaceOne(ctx, bson.M{"_id": fmt.Sprint("u", id)}, bson.D{{Key: "z", Value: true}, {Key: "count", Value: int64(id)}, {Key: "sub", Value: bson.D{{Key: "b", Value: "two"}}}})
	case op < 88:
		_, err = coll.DeleteOne(ctx, bson.M{"_id": fmt.Sprint("u", id)})
	case op < 91:
		_, err = coll.DeleteMany(ctx, bson.M{"n": bson.M{"$lt": int32(id)}})
	case op < 94:
		_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "count", Value: 1}}, Options: options.Index().SetExpireAfterSeconds(int32(60 + id))})
		if err != nil && strings.Contains(err.Error(), "existing index") {
			err = nil
		}
	case op < 96:
		_, err = coll.Indexes().DropAll(ctx)
	case op < 97:
		err = coll.Drop(ctx)
	case op < 99:
		// deleted and inserted again in one transaction: the document
		// moves to the end of its collection
		err = db.Client().UseSession(ctx, func(sc lungo.ISessionContext) error {
			_, err := sc.WithTransaction(sc, func(sc lungo.ISessionContext) (interface{}, error) {
				c := db.Collection("c")
				if _, err := c.DeleteOne(sc, bson.M{"_id": fmt.Sprint("u", id)}); err != nil {
					return nil, err
				}
				_, err := c.InsertOne(sc, bson.D{{Key: "_id", Value: fmt.Sprint("u", id)}, {Key: "again", Value: true}})
				return nil, err
			})
			return err
		})
	default:
		// a transaction writing two collections at once
		err = db.Client().UseSession(ctx, func(sc lungo.ISessionContext) error {
			_, err := sc.WithTransaction(sc, func(sc lungo.ISessionContext) (interface{}, error) {
				if _, err := db.Collection("a").UpdateOne(sc, bson.M{"_id": "txn"}, bson.M{"$inc": bson.M{"n": 1}}, options.Update().SetUpsert(true)); err != nil {
					return nil, err
				}
				_, err := db.Collection("b").DeleteOne(sc, bson.M{"_id": fmt.Sprint("u", id)})
				return nil, err
			})
			return err
		})
	}
	if err != nil {
		t.Fatalf("change: %v", err)
	}
}

// TestJournalTornTailIsCutAndDamageRefused: bytes after the last whole
// record (a commit that was being appended when the process died, so never
// acknowledged) are cut off at the next open, which keeps every whole
// record and appends after them; a damaged journal header, a journal
// without its main file and a main file of a newer format are refused
// rather than opened as something else.
func TestJournalTornTailIsCutAndDamageRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "t.lungo")
	client, engine, _ := openFileEngine(t, path, lungo.FileStoreOptions{})
	for i := range 5 {
		if _, err := client.Database("d").Collection("c").InsertOne(ctx, bson.M{"_id": i}); err != nil {
			t.Fatal(err)
		}
	}
	want := dumpCatalog(t, engine.Catalog())
	engine.Close()
	jpath := path + lungo.JournalSuffix
	whole, err := os.ReadFile(jpath)
	if err != nil {
		t.Fatal(err)
	}
	torn := append(append([]byte(nil), whole...), 0x30, 0, 0, 0, 1, 2, 3, 4, 5) // a header promising 48 bytes, 5 there
	if err := os.WriteFile(jpath, torn, 0o644); err != nil {
		t.Fatal(err)
	}
	client, engine, _ = openFileEngine(t, path, lungo.FileStoreOptions{})
	if got := dumpCatalog(t, engine.Catalog()); got != want {
		t.Fatalf("after a torn tail:\n%s", firstDifference(want, got))
	}
	if after, _ := os.ReadFile(jpath); !bytes.Equal(after, whole) {
		t.Fatalf("the torn tail was not cut: %d bytes, want %d", len(after), len(whole))
	}
	if _, err := client.Database("d").Collection("c").InsertOne(ctx, bson.M{"_id": 5}); err != nil {
		t.Fatal(err)
	}
	want = dumpCatalog(t, engine.Catalog())
	engine.Close()
	_, engine, _ = openFileEngine(t, path, lungo.FileStoreOptions{})
	if got := dumpCatalog(t, engine.Catalog()); got != want {
		t.Fatalf("a record appended after the cut is lost:\n%s", firstDifference(want, got))
	}
	engine.Close()

	refused := func(what, wantErr string) {
		t.Helper()
		_, _, err := lungo.Open(ctx, lungo.Options{Store: lungo.NewFileStore(path, 0o644)})
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("%s: open answered %v, want an error with %q", what, err, wantErr)
		}
		t.Logf("%s: %v", what, err)
	}
	good, _ := os.ReadFile(jpath)
	bad := append([]byte(nil), good...)
	bad[9] ^= 0xFF // in the generation
	if err := os.WriteFile(jpath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	refused("damaged journal header", "damaged header")
	if err := os.WriteFile(jpath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	main, _ := os.ReadFile(path)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	refused("journal without its main file", "without its main file")
	newer, err := bson.Marshal(bson.D{{Key: "format", Value: lungo.FileFormat + 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, newer, 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err = lungo.Open(ctx, lungo.Options{Store: lungo.NewFileStore(path, 0o644)})
	if !errors.Is(err, lungo.ErrNewerFileFormat) {
		t.Fatalf("a main file of format %d: %v, want ErrNewerFileFormat", lungo.FileFormat+1, err)
	}
	if err := os.WriteFile(path, main, 0o644); err != nil {
		t.Fatal(err)
	}
	_, engine, _ = openFileEngine(t, path, lungo.FileStoreOptions{})
	if got := dumpCatalog(t, engine.Catalog()); got != want {
		t.Fatalf("after the refusals:\n%s", firstDifference(want, got))
	}
	engine.Close()
}

// TestFormatOneIsReadAndOlderReleasesRefuseFormatTwo: a file of the
// single-file format (what releases before the journal wrote) opens with
// its data and is turned into format 2 at once; a format-2 main file, read
// as those releases read it (lungo.File), fails to decode with an error
// that names FileRefusal, so an older release refuses it saying why
// instead of opening it without the journal's commits.
func TestFormatOneIsReadAndOlderReleasesRefuseFormatTwo(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.lungo")
	client, engine, _ := openFileEngine(t, filepath.Join(t.TempDir(), "scratch.lungo"), lungo.FileStoreOptions{})
	for i := range 3 {
		if _, err := client.Database("d").Collection("c").InsertOne(ctx, bson.M{"_id": i, "v": "old"}); err != nil {
			t.Fatal(err)
		}
	}
	want := dumpCatalog(t, engine.Catalog())
	v1, err := bson.Marshal(lungo.BuildFile(engine.Catalog())) // upstream's format
	engine.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	_, engine, _ = openFileEngine(t, path, lungo.FileStoreOptions{})
	if got := dumpCatalog(t, engine.Catalog()); got != want {
		t.Fatalf("a format-1 file:\n%s", firstDifference(want, got))
	}
	engine.Close()
	v2, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := bson.Raw(v2).LookupErr("format"); err != nil || f.AsInt64() != lungo.FileFormat {
		t.Fatalf("after opening a format-1 file its format is %v (%v), want %d", f, err, lungo.FileFormat)
	}
	var old lungo.File
	err = bson.Unmarshal(v2, &old)
	if err == nil || !strings.Contains(err.Error(), lungo.FileRefusal) {
		t.Fatalf("a format-2 file read as format 1: %v; want an error naming %q", err, lungo.FileRefusal)
	}
	t.Logf("an older release reads: %v", err)
}

// TestKeyedWriteBytesDoNotGrowWithKeysHeld is issue 28's keyed-write cost
// on the file store, counted in bytes instead of timed: a keyed placement
// appends a journal record of what it changed (the key's field of its
// bucket, the pixel of its tile, the outbox event), so the bytes it writes
// are the same with 1,000 and with 10,000 keys held by 300 clients (a
// tenfold growth; BenchmarkKeyedPlace/file times 3,000 and 30,000). Before
// lungo patch 10 every commit rewrote the whole file: 0.64 MB a keyed
// write at 3,000 keys, 4.5 MB at 30,000.
func TestKeyedWriteBytesDoNotGrowWithKeysHeld(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.lungo")
	s, fs, err := store.OpenFile(ctx, path, store.Options{GroupCommit: 64, PruneOnPublish: true}, lungo.FileStoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	const clients, writes = 300, 40
	perWrite := func(held int) float64 {
		t.Helper()
		before := fs.Stats()
		for i := range writes {
			key := store.ScopedKey(fmt.Sprint("c", i%clients), fmt.Sprintf("held%d-%d", held, i))
			if _, _, err := s.Place(ctx, place(i%64, 7, 0x102030), key, store.Trace{}); err != nil {
				t.Fatal(err)
			}
		}
		after := fs.Stats()
		if n := after.Records - before.Records; n != writes {
			t.Fatalf("%d records for %d keyed writes, want one each", n, writes)
		}
		if after.WholeNamespaces != before.WholeNamespaces {
			t.Fatalf("a keyed write recorded %d namespaces in full", after.WholeNamespaces-before.WholeNamespaces)
		}
		b := float64(after.RecordBytes-before.RecordBytes) / writes
		main, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d keys held: %.0f journal bytes per keyed write; main file %d bytes", held, b, main.Size())
		return b
	}
	holdKeys(t, s, 0, 1_000, clients)
	small := perWrite(1_000)
	holdKeys(t, s, 1_000, 10_000, clients)
	large := perWrite(10_000)
	// Slack for the digits of growing versions and counters.
	if large > small+32 {
		t.Fatalf("a keyed write appends %.0f bytes with 10,000 keys held, %.0f with 1,000: it grows with the keys", large, small)
	}
	if large > 4096 {
		t.Fatalf("a keyed write appends %.0f bytes: more than what it changed", large)
	}
	st := fs.Stats()
	if st.Compactions < 1 {
		t.Fatalf("%d compactions while 10,000 keys were written: the journal was never folded in", st.Compactions)
	}
	main, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// A compaction follows the commit that takes the journal past both
	// bounds, so it exceeds them by at most one record (a batch of 64).
	if j, err := os.Stat(path + lungo.JournalSuffix); err != nil || j.Size() > max(lungo.DefaultCompactAt, main.Size())+256<<10 {
		t.Fatalf("journal of %v bytes (%v), main file of %d: the journal is not bounded", j.Size(), err, main.Size())
	}
}
