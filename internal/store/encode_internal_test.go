package store

import (
	"bytes"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/bson/primitive"
)

// TestOutboxDocEncodesAsItsStruct: the outbox document a placement inserts
// (built by hand, for speed) is byte for byte what the driver makes of
// outboxDoc, with every optional field absent and present, so the two
// cannot drift apart.
func TestOutboxDocEncodesAsItsStruct(t *testing.T) {
	at := time.Date(2026, 11, 29, 13, 1, 2, 345_000_000, time.UTC)
	cases := map[string]outboxDoc{
		"a placement": {ID: primitive.NewObjectID(), Canvas: "main", Kind: "pixel", GX: 3, GY: 999,
			Color: "#A0B1C2", Version: 7, CommittedAt: at, State: statePending},
		"traced": {ID: primitive.NewObjectID(), Canvas: "main", Kind: "pixel", GX: 0, GY: 0,
			Color: "#000000", Version: 1 << 40, CommittedAt: at, State: statePending,
			Trace: traceDoc{TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "k=v"}},
		"half traced": {ID: primitive.NewObjectID(), Canvas: "c", Kind: "canary", CommittedAt: at, State: statePending,
			Trace: traceDoc{TraceState: "k=v"}},
		"published": {ID: primitive.NewObjectID(), Canvas: "main", Kind: "pixel", GX: 1 << 33, GY: -1,
			Color: "#FFFFFF", Version: 2, CommittedAt: at, State: statePublished, Claim: "c1", Epoch: "e1", PublishedAt: &at},
	}
	for name, d := range cases {
		want, err := bson.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bson.Marshal(d.doc())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: doc() encodes as\n%v\nthe struct as\n%v", name, bson.Raw(got), bson.Raw(want))
		}
	}
}

// TestClaimDocEncodesAsItsStruct: likewise for the open claim the
// sequencer records.
func TestClaimDocEncodesAsItsStruct(t *testing.T) {
	for _, c := range []Claim{{ID: "c1", IDs: []string{"a"}}, {ID: "c2", IDs: []string{"a", "b", "c"}}, {ID: "c3", IDs: []string{}}} {
		want, err := bson.Marshal(bson.M{"claim": claimDoc{ID: c.ID, IDs: c.IDs}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := bson.Marshal(bson.M{"claim": c.doc()})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: doc() encodes as\n%v\nthe struct as\n%v", c.ID, bson.Raw(got), bson.Raw(want))
		}
	}
}
