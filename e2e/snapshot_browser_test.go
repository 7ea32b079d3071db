package e2e

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// TestBrowserLoadsBinarySnapshot: a page opened on a painted canvas shows
// it from the binary snapshot (no event carries those pixels), and events
// after the load land on top of it.
func TestBrowserLoadsBinarySnapshot(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	w := cluster.NewWriter(c.APIURL(), history.NewRecorder(rand.Uint32()), 8)
	place := func(gx, gy int, color string) {
		t.Helper()
		status, err := w.Post(ctx, fmt.Sprintf(`{"gx":%d,"gy":%d,"color":%q}`, gx, gy, color), "", &protocol.Event{})
		if err != nil || status != 201 {
			t.Fatalf("POST: %d %v", status, err)
		}
	}
	place(4, 4, "#A1A1A1")
	place(200, 100, "#0B0C0D")
	place(4, 4, "#B2B2B2") // a newer version of the same pixel
	pg := page(t, browser(t), c.GatewayURLs()[0]+"/")
	waitPixel(t, pg, 4, 4, "#B2B2B2")
	waitPixel(t, pg, 200, 100, "#0B0C0D")
	place(200, 100, "#123456")
	waitPixel(t, pg, 200, 100, "#123456")
	screenshot(t, pg, "binary-snapshot")
}
