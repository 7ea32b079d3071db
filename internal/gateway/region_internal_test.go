package gateway

import (
	"errors"
	"testing"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// A client that changes its regions faster than its acknowledgements can
// be written is closed after maxPendingAcks, not given a growing queue;
// a resync keeps the newest acknowledgement, which the client waits for.
func TestSubscribeFloodIsBounded(t *testing.T) {
	c := &conn{fl: &flusher{}}
	c.marked.Store(true) // no flusher runs here: keep mark from queuing c
	for i := range maxPendingAcks {
		if err := c.acknowledge([]byte(`{"type":"subscribed"}`)); err != nil {
			t.Fatalf("acknowledgement %d refused: %v", i, err)
		}
	}
	err := c.acknowledge([]byte(`{"type":"subscribed"}`))
	var fe *frameError
	if !errors.As(err, &fe) || fe.Code != 1008 {
		t.Fatalf("acknowledgement past the bound: %v, want a 1008 close", err)
	}
	c.resync([]byte("r"), 7)
	if len(c.q) != 2 || !c.q[0].resync || c.q[1].ctl == nil || c.acks != 1 {
		t.Fatalf("after a resync the queue is %+v (acks %d), want the resync and the newest acknowledgement", c.q, c.acks)
	}
}

// view.apply: adding, removing, all, and the refusals that close.
func TestViewApply(t *testing.T) {
	size := canvas.Size{Width: 256, Height: 256}
	var v view
	v, err := v.apply(size, clientFrame{Type: protocol.TypeSubscribe, Regions: []canvas.Region{65, 1}})
	if err != nil || !v.regional || len(v.regions) != 2 || v.regions[0] != 1 {
		t.Fatalf("subscribe: %+v %v", v, err)
	}
	v, _ = v.apply(size, clientFrame{Type: protocol.TypeSubscribe, Regions: []canvas.Region{1, 2}})
	v, _ = v.apply(size, clientFrame{Type: protocol.TypeUnsubscribe, Regions: []canvas.Region{65}})
	if len(v.regions) != 2 || v.regions[0] != 1 || v.regions[1] != 2 {
		t.Fatalf("after adding 1,2 and removing 65: %v", v.regions)
	}
	if _, err := v.apply(size, clientFrame{Type: protocol.TypeSubscribe, Regions: []canvas.Region{4}}); err == nil {
		t.Fatal("region 4 of a 256-wide canvas accepted")
	}
	if w, _ := v.apply(size, clientFrame{Type: protocol.TypeSubscribe, All: true}); w.regional {
		t.Fatal("subscribe all kept regions")
	}
}
