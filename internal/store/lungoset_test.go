package store_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pixelflow/pixelflow/third_party/lungo/bsonkit"
	"go.mongodb.org/mongo-driver/bson"
)

// TestLungoSetMatchesAModel drives lungo's document set (patches 7 and 8: a
// lazy position index, built only for large sets and only by a mutation
// other than an append to a set of up to 1,024) with
// random adds, replaces and removes, small and large, on clones of clones,
// and checks every step against a plain list: the same answers, the same
// order, and a clone's mutations never reach the set it was cloned from.
func TestLungoSetMatchesAModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 5, 31, 32, 33, 200, 1024, 1025} {
		var model bsonkit.List
		set := bsonkit.NewSet(nil)
		for range size {
			d := &bson.D{}
			if !set.Add(d) {
				t.Fatal("a new document was refused")
			}
			model = append(model, d)
		}
		for step := range 2000 {
			if r.IntN(50) == 0 { // clone: the original must not move
				frozen, was := set, slices.Clone(set.List)
				set = set.Clone()
				defer func() {
					if !slices.Equal(frozen.List, was) {
						t.Errorf("size %d step %d: a clone's mutation changed its original", size, step)
					}
				}()
			}
			other := &bson.D{}
			if len(model) > 0 && r.IntN(2) == 0 {
				other = model[r.IntN(len(model))]
			}
			in := slices.Contains(model, other)
			switch r.IntN(4) {
			case 0:
				if got := set.Add(other); got == in {
					t.Fatalf("size %d step %d: Add = %v with the document in: %v", size, step, got, in)
				}
				if !in {
					model = append(model, other)
				}
			case 1:
				if got := set.Remove(other); got != in {
					t.Fatalf("size %d step %d: Remove = %v with the document in: %v", size, step, got, in)
				}
				if in {
					model = slices.DeleteFunc(model, func(d bsonkit.Doc) bool { return d == other })
				}
			case 2:
				repl := &bson.D{}
				if got := set.Replace(other, repl); got != in {
					t.Fatalf("size %d step %d: Replace = %v with the document in: %v", size, step, got, in)
				}
				if in {
					model[slices.Index(model, other)] = repl
				}
				if len(model) > 1 && set.Replace(model[0], model[1]) {
					t.Fatalf("size %d step %d: Replace onto a document already in", size, step)
				}
			case 3:
				i, ok := set.Position(other)
				if ok != in || (in && model[i] != other) {
					t.Fatalf("size %d step %d: Position = %d, %v; in: %v", size, step, i, ok, in)
				}
			}
			if !slices.Equal(set.List, model) {
				t.Fatalf("size %d step %d: set and model differ", size, step)
			}
		}
	}
}

// TestLungoCloneAndAppendAllocateOnlyTheClone: every write clones the
// oplog (bounded at 128 events) and appends its events to the clone. Patch
// 8: the append scans instead of building the clone's position map, and
// the clone has room for it; before, the pair cost a map and a second list
// (14 % of all allocation at 1,000 writes/s).
func TestLungoCloneAndAppendAllocateOnlyTheClone(t *testing.T) {
	set := bsonkit.NewSet(nil)
	for range 128 {
		set.Add(&bson.D{})
	}
	events := []bsonkit.Doc{{}, {}, {}}
	allocs := testing.AllocsPerRun(100, func() {
		c := set.Clone()
		for _, e := range events {
			if !c.Add(e) {
				t.Fatal("a new event was refused")
			}
		}
	})
	if allocs > 2 { // the Set and its list
		t.Fatalf("a clone and 3 appends allocate %.0f times, want at most 2", allocs)
	}
}

// TestLungoSelectReservesAtMostTheList: a query with a large limit over a
// short list reserves no more than the list (patch 8: the relay's claim,
// limit 4,096, reserved 32 KB per claim over a pending outbox of a few).
func TestLungoSelectReservesAtMostTheList(t *testing.T) {
	list := bsonkit.List{&bson.D{}, &bson.D{}, &bson.D{}}
	got := bsonkit.Select(list, 4096, func(bsonkit.Doc) (bool, bool) { return true, false })
	if len(got) != 3 || cap(got) > len(list) {
		t.Fatalf("Select over 3 documents with limit 4096: len %d cap %d, want 3 and at most 3", len(got), cap(got))
	}
}
