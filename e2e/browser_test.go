package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browser starts headless Debian chromium (loopback only) and returns a
// context for its first tab. A missing chromium fails the test: the suite
// promises a real browser, and .ci/run installs one.
func browser(t *testing.T) context.Context {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatalf("chromium not found on PATH: install it with `sudo apt-get install -y chromium` (the browser suite needs a real browser)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1000, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// pixelJS reads one canvas pixel as "#RRGGBB".
const pixelJS = `(() => { const d = document.getElementById('canvas').getContext('2d').getImageData(%d, %d, 1, 1).data;
  return '#' + [d[0], d[1], d[2]].map(v => v.toString(16).padStart(2, '0')).join('').toUpperCase(); })()`

// TestBrowserTwoPages: two pages, each on its own gateway, open the canvas;
// a click on one places a pixel and the other page shows it.
func TestBrowserTwoPages(t *testing.T) {
	ctx, c := setup(t, Options{Gateways: 2})
	bctx := browser(t)
	pageA, cancelA := chromedp.NewContext(bctx)
	defer cancelA()
	pageB, cancelB := chromedp.NewContext(bctx)
	defer cancelB()
	connected := chromedp.Poll[bool](`document.getElementById('state').textContent === 'connected'`, chromedp.WithPollingTimeout(30*time.Second))
	for i, p := range []context.Context{pageA, pageB} {
		if err := chromedp.Do(p, chromedp.Navigate(c.GatewayURLs()[i]+"/")); err != nil {
			t.Fatalf("page %d: navigate: %v", i, err)
		}
		if _, err := chromedp.Run(p, connected); err != nil {
			t.Fatalf("page %d never connected: %v", i, err)
		}
	}

	const gx, gy, want = 10, 12, "#12AB34"
	// Click the centre of pixel (gx, gy) on page A with the colour picked.
	click := fmt.Sprintf(`(() => { document.getElementById('color').value = '%s';
	  const cv = document.getElementById('canvas'), r = cv.getBoundingClientRect();
	  return [r.left + (%d + 0.5) * r.width / cv.width, r.top + (%d + 0.5) * r.height / cv.height]; })()`, want, gx, gy)
	xy, err := chromedp.Run(pageA, chromedp.Evaluate[[]float64](click))
	if err != nil || len(xy) != 2 {
		t.Fatalf("locate pixel: %v %v", xy, err)
	}
	if err := chromedp.Do(pageA, chromedp.MouseClickXY(xy[0], xy[1])); err != nil {
		t.Fatalf("click: %v", err)
	}
	shows := chromedp.Poll[bool](fmt.Sprintf(pixelJS, gx, gy)+` === '`+want+`'`, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))
	for i, p := range []context.Context{pageB, pageA} {
		if _, err := chromedp.Run(p, shows); err != nil {
			got, _ := chromedp.Run(p, chromedp.Evaluate[string](fmt.Sprintf(pixelJS, gx, gy)))
			t.Errorf("page %c does not show the clicked pixel: %v (it shows %s)", 'B'-rune(i), err, got)
		}
	}
	snap, err := Snapshot(ctx, c.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range snap.Pixels {
		found = found || (p.GX == gx && p.GY == gy && p.Color == want)
	}
	if !found {
		t.Errorf("the store does not have the clicked pixel (%d,%d) %s", gx, gy, want)
	}
	for name, p := range map[string]context.Context{"page-a": pageA, "page-b": pageB} {
		png, err := chromedp.Run(p, chromedp.CaptureScreenshot())
		if err != nil {
			t.Errorf("screenshot %s: %v", name, err)
			continue
		}
		path := filepath.Join(t.ArtifactDir(), name+".png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Error(err)
		}
		t.Logf("screenshot: %s", path)
	}
}
