package gateway

import (
	"slices"

	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// view is what one connection receives (docs/protocol.md, "Regions"):
// every event (regional false), or those inside regions, sorted, and
// every canary.
type view struct {
	regional bool
	regions  []canvas.Region
}

// apply returns the view after the client's subscribe or unsubscribe
// frame f, or the frame error that closes the connection: a region
// outside the canvas, or more than canvas.MaxRegions held.
func (v view) apply(size canvas.Size, f clientFrame) (view, error) {
	if f.Type == protocol.TypeSubscribe && f.All {
		return view{}, nil
	}
	ids, err := canvas.CheckRegions(size, f.Regions)
	if err != nil {
		return v, &frameError{websocket.ClosePolicyViolation, truncate(canvas.ErrorMessage(err), 100)}
	}
	held := v.regions
	if !v.regional {
		held = nil // a whole-canvas connection that subscribes holds only what it names
	}
	next := view{regional: true}
	if f.Type == protocol.TypeSubscribe {
		next.regions = append(slices.Clone(held), ids...)
		slices.Sort(next.regions)
		next.regions = slices.Compact(next.regions)
	} else {
		next.regions = slices.DeleteFunc(slices.Clone(held), func(r canvas.Region) bool {
			_, found := slices.BinarySearch(ids, r)
			return found
		})
	}
	if len(next.regions) > canvas.MaxRegions {
		return v, &frameError{websocket.ClosePolicyViolation, "too many regions: a connection holds at most 256; subscribe to all instead"}
	}
	return next, nil
}

// holds reports whether an entry is delivered under v.
func (v view) holds(e stream.Entry) bool {
	if !v.regional || e.Kind == canvas.KindCanary {
		return true
	}
	_, found := slices.BinarySearch(v.regions, canvas.RegionOf(e.GX, e.GY))
	return found
}

// filter returns the entries of page delivered under v (page itself when
// v is the whole canvas).
func (v view) filter(page []stream.Entry) []stream.Entry {
	if !v.regional {
		return page
	}
	var out []stream.Entry
	for _, e := range page {
		if v.holds(e) {
			out = append(out, e)
		}
	}
	return out
}

// encodeSubscribed is the acknowledgement of a change to v at pos.
func encodeSubscribed(pos canvas.Position, v view) []byte {
	return mustJSON(protocol.Subscribed{Type: protocol.TypeSubscribed, Epoch: pos.Epoch, Seq: pos.Seq,
		All: !v.regional, Regions: v.regions})
}
