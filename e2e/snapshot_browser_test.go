package e2e

import (
	"math/rand/v2"
	"testing"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
)

// TestBrowserLoadsBinarySnapshot: a page opened on a painted canvas shows
// it from the binary snapshot (no event carries those pixels), and events
// after the load land on top of it.
func TestBrowserLoadsBinarySnapshot(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	w := cluster.NewWriter(c.APIURL(), history.NewRecorder(rand.Uint32()), 8)
	place := placer(ctx, t, w)
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
