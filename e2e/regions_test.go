package e2e

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
)

// TestRegions: on the default 256×256 canvas (16 regions), 2 whole-canvas
// clients and 10 region clients, 5 of them panning (unsubscribing a region
// and subscribing another every 50ms while the writes run, one going to
// the whole canvas and back, with drops that resume with since= and
// regions=), under 3,000 writes spread over the canvas. The checker must
// pass: every acknowledged write inside a client's regions while it held
// them received or in its region snapshot, nothing outside them after the
// acknowledgement that removed them, every client's regions equal to the
// store; and a still client receives only its share of the events.
func TestRegions(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2})
	size := canvas.Size{Width: 256, Height: 256}
	var all []canvas.Region
	for r := range canvas.Region(canvas.RegionStride * 4) {
		if size.HasRegion(r) {
			all = append(all, r)
		}
	}
	pick := func(rng *rand.Rand, n int) []canvas.Region {
		p := rng.Perm(len(all))[:n]
		out := make([]canvas.Region, n)
		for i, j := range p {
			out[i] = all[j]
		}
		return out
	}
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 12, func(i int, o *client.Options) {
		if i >= 2 {
			o.Regions = pick(rand.New(rand.NewPCG(uint64(i), 7)), 4)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	panCtx, stopPanning := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pans, alls, drops int
	var mu sync.Mutex
	for i := 7; i < 12; i++ {
		cl := w.Clients[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			for n := 0; ; n++ {
				select {
				case <-panCtx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
				whole, held := cl.Regions()
				switch {
				case whole:
					_ = cl.Subscribe(ctx, pick(rng, 4)...)
				case i == 7 && n%20 == 19:
					_ = cl.SubscribeAll(ctx)
					mu.Lock()
					alls++
					mu.Unlock()
				case n%15 == 14:
					cl.Drop()
					mu.Lock()
					drops++
					mu.Unlock()
				default:
					var next canvas.Region
					for next = all[rng.IntN(len(all))]; contains(held, next); next = all[rng.IntN(len(all))] {
					}
					if len(held) > 0 {
						_ = cl.Unsubscribe(ctx, held[rng.IntN(len(held))])
					}
					_ = cl.Subscribe(ctx, next)
					mu.Lock()
					pans++
					mu.Unlock()
				}
			}
		}()
	}
	cluster.NewWriter(c.APIURL(), rec, size.Width).Run(ctx, 3, 3000)
	stopPanning()
	wg.Wait()
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)
	t.Logf("%d pans, %d to the whole canvas, %d drops", pans, alls, drops)
	if pans == 0 || drops == 0 || alls == 0 {
		t.Errorf("the suite proves little: %d pans, %d to the whole canvas, %d drops", pans, alls, drops)
	}
	events := map[string]int{}
	for _, v := range rep.Clients {
		events[v.Client] = v.Events
	}
	// A still client with 4 of 16 regions gets about a quarter of the
	// events; half of what a whole-canvas client gets is a wide margin.
	for i := 2; i < 7; i++ {
		name := "client-" + twoDigits(i)
		if whole := events["client-00"]; events[name]*2 > whole {
			t.Errorf("%s (4 of 16 regions) received %d events, the whole-canvas client %d: not filtered", name, events[name], whole)
		}
	}
}

func contains(rs []canvas.Region, r canvas.Region) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func twoDigits(i int) string { return string([]byte{byte('0' + i/10), byte('0' + i%10)}) }
