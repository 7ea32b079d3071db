package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/protocol/protocoltest"
	"github.com/pixelflow/pixelflow/internal/web"
)

// browserNames are the browsers the suite can drive, in order of
// preference: Debian's chromium here; on the GitHub runner image
// /usr/bin/chromium (a Chromium snapshot) and google-chrome. `make
// ensure-chromium` (CHROMIUM_NAMES in the Makefile) checks the same names.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// findBrowser returns the first of browserNames on PATH that runs: a name
// whose `--version` fails is skipped (Ubuntu's chromium-browser deb is a
// shim for a snap, and fails that way when the snap is missing).
func findBrowser() (string, error) {
	var tried []string
	for _, name := range browserNames {
		p, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		if out, err := exec.Command(p, "--version").CombinedOutput(); err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v: %s)", p, err, strings.TrimSpace(string(out))))
			continue
		}
		return p, nil
	}
	return "", fmt.Errorf("no usable browser among %v on PATH (install one with `sudo apt-get install -y chromium`; the browser suite needs a real browser); found but not running: %v", browserNames, tried)
}

// browser starts a headless Chromium (loopback only) and returns a context
// for its first tab. A missing browser fails the test: the suite promises a
// real browser, and `make e2e` checks for one first.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := findBrowser()
	if err != nil {
		t.Fatal(err)
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
	ctx, c := setup(t, cluster.Options{Gateways: 2})
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
	snap, err := cluster.Snapshot(ctx, c.APIURL())
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
	screenshot(t, pageA, "page-a")
	screenshot(t, pageB, "page-b")
}

// page opens a tab on url and waits until the page says it is connected.
func page(t *testing.T, bctx context.Context, url string) context.Context {
	t.Helper()
	p, cancel := chromedp.NewContext(bctx)
	t.Cleanup(cancel)
	if err := chromedp.Do(p, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigate %s: %v", url, err)
	}
	waitState(t, p, "connected")
	return p
}

func waitState(t *testing.T, p context.Context, state string) {
	t.Helper()
	if _, err := chromedp.Run(p, chromedp.Poll[bool](`document.getElementById('state').textContent === '`+state+`'`,
		chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		got, _ := chromedp.Run(p, chromedp.Evaluate[string](`document.getElementById('state').textContent`))
		t.Fatalf("page never became %q (it is %q): %v", state, got, err)
	}
}

// waitPixel waits until the page's canvas shows color at (gx, gy).
func waitPixel(t *testing.T, p context.Context, gx, gy int, color string) {
	t.Helper()
	if _, err := chromedp.Run(p, chromedp.Poll[bool](fmt.Sprintf(pixelJS, gx, gy)+` === '`+color+`'`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		got, _ := chromedp.Run(p, chromedp.Evaluate[string](fmt.Sprintf(pixelJS, gx, gy)))
		t.Fatalf("pixel (%d,%d) is %s, want %s: %v", gx, gy, got, color, err)
	}
}

func screenshot(t *testing.T, p context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(p, chromedp.CaptureScreenshot())
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", path)
}

// placer returns a function that places one pixel through w and returns
// its version, failing the test on anything but 201.
func placer(ctx context.Context, t *testing.T, w *cluster.Writer) func(gx, gy int, color string) int64 {
	return func(gx, gy int, color string) int64 {
		t.Helper()
		var ev protocol.Event
		status, err := w.Post(ctx, fmt.Sprintf(`{"gx":%d,"gy":%d,"color":%q}`, gx, gy, color), "", &ev)
		if err != nil || status != 201 {
			t.Fatalf("POST: %d %v", status, err)
		}
		return ev.Version
	}
}

// TestBrowserSurvivesGatewayRestartAndResync: the page reconnects and
// resumes when its gateway is killed and restarted, and reloads the
// snapshot when Redis comes back empty (a new epoch); pixels placed after
// each fault still appear.
func TestBrowserSurvivesGatewayRestartAndResync(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2})
	bctx := browser(t)
	pg := page(t, bctx, c.GatewayURLs()[0]+"/")
	w := cluster.NewWriter(c.APIURL(), history.NewRecorder(rand.Uint32()), 8)
	place := placer(ctx, t, w)
	place(1, 1, "#111111")
	waitPixel(t, pg, 1, 1, "#111111")

	c.Gateways[0].Kill()
	waitState(t, pg, "reconnecting")
	place(2, 2, "#222222") // while the page's gateway is down
	if err := c.Gateways[0].Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitState(t, pg, "connected")
	waitPixel(t, pg, 2, 2, "#222222")
	screenshot(t, pg, "after-gateway-restart")

	posJS := chromedp.Evaluate[string](`document.getElementById('pos').textContent`)
	before, _ := chromedp.Run(pg, posJS)
	if err := c.KillRedis(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.RestartRedis(ctx, true); err != nil {
		t.Fatal(err)
	}
	place(3, 3, "#333333")
	waitPixel(t, pg, 3, 3, "#333333")
	waitPixel(t, pg, 1, 1, "#111111") // still there after the resync
	waitState(t, pg, "connected")
	// The page moves to the new epoch when its gateway announces it (a
	// resync frame); that may come after the pixel arrived.
	oldEpoch := strings.SplitN(before, ":", 2)[0]
	if _, err := chromedp.Run(pg, chromedp.Poll[bool](`(() => { const p = document.getElementById('pos').textContent; return /^[a-z0-9]+:[0-9]+$/.test(p) && !p.startsWith('`+oldEpoch+`:'); })()`,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		after, _ := chromedp.Run(pg, posJS)
		t.Errorf("the page is still on epoch %q after Redis came back empty (position %s → %s): %v", oldEpoch, before, after, err)
	}
	screenshot(t, pg, "after-resync")
}

// TestDashboardShowsBacklog: /ops shows the outbox backlog rise while Redis
// is down and fall to 0 once it is back; the sparkline names its scale
// (its top is the largest backlog it shows).
func TestDashboardShowsBacklog(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	bctx := browser(t)
	ops, cancel := chromedp.NewContext(bctx)
	defer cancel()
	if err := chromedp.Do(ops, chromedp.Navigate(c.GatewayURLs()[0]+"/ops")); err != nil {
		t.Fatal(err)
	}
	backlog := func(cond string) {
		t.Helper()
		if _, err := chromedp.Run(ops, chromedp.Poll[bool](`(() => { const v = Number(document.getElementById('v-backlog').textContent); return `+cond+`; })()`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			got, _ := chromedp.Run(ops, chromedp.Evaluate[string](`document.getElementById('v-backlog').textContent`))
			t.Fatalf("dashboard backlog %q never satisfied %s: %v", got, cond, err)
		}
	}
	backlog("v === 0")
	if err := c.KillRedis(ctx); err != nil {
		t.Fatal(err)
	}
	w := cluster.NewWriter(c.APIURL(), history.NewRecorder(rand.Uint32()), 8)
	w.Retries = 0
	w.Run(ctx, 2, 30)
	backlog("v >= 20")
	if _, err := chromedp.Run(ops, chromedp.Poll[bool](`(() => { const m = /^0 – ([0-9.]+) over the last [0-9]+ s$/.exec(document.getElementById('k-backlog').textContent); return !!m && Number(m[1]) >= 20; })()`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		got, _ := chromedp.Run(ops, chromedp.Evaluate[string](`document.getElementById('k-backlog').textContent`))
		t.Errorf("the backlog sparkline's scale reads %q, want 0 – (≥ 20) over the last N s: %v", got, err)
	}
	screenshot(t, ops, "dashboard-redis-down")
	if err := c.RestartRedis(ctx, false); err != nil {
		t.Fatal(err)
	}
	backlog("v === 0")
	screenshot(t, ops, "dashboard-recovered")
}

// TestBrowserReplacesCanvasAfterStoreReset: the store loses everything
// while Redis keeps the stream (a memory store restarted, a restore, a
// rollback), so pixel versions start over. The page held (1,1) at v3 and
// (2,2); after the new epoch's resync it must show exactly the new canvas:
// (1,1) in the colour written after the reset (v1) and (2,2) unpainted.
// Merging the snapshot by version kept the old pixels forever.
func TestBrowserReplacesCanvasAfterStoreReset(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	bctx := browser(t)
	pg := page(t, bctx, c.GatewayURLs()[0]+"/")
	w := cluster.NewWriter(c.APIURL(), history.NewRecorder(rand.Uint32()), 8)
	w.Retries = 50 // the api restarts below
	place := placer(ctx, t, w)
	for _, col := range []string{"#111111", "#222222", "#333333"} {
		place(1, 1, col)
	}
	place(2, 2, "#AAAAAA")
	waitPixel(t, pg, 1, 1, "#333333")
	waitPixel(t, pg, 2, 2, "#AAAAAA")

	if err := c.ResetStore(ctx); err != nil {
		t.Fatal(err)
	}
	var v int64
	deadline := time.Now().Add(30 * time.Second)
	for { // the api is starting again
		var ev protocol.Event
		status, err := w.Post(ctx, `{"gx":1,"gy":1,"color":"#444444"}`, "", &ev)
		if err == nil && status == 201 {
			v = ev.Version
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST after the store reset: %d %v", status, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v != 1 {
		t.Fatalf("the write after the reset has version %d, want 1 (the store starts over)", v)
	}
	waitPixel(t, pg, 1, 1, "#444444")
	waitPixel(t, pg, 2, 2, "#FFFFFF")
	waitState(t, pg, "connected")
	screenshot(t, pg, "after-store-reset")
}

// scriptedGateway serves the real page with a scripted /ws and a
// /api/canvas that can be held, so a test controls what the page receives
// and when: the order of live events and a snapshot load.
type scriptedGateway struct {
	srv      *httptest.Server
	conns    chan *websocket.Conn
	snapshot atomic.Value // string: the /api/canvas body
	gate     atomic.Pointer[chan struct{}]
	asked    chan struct{}
}

func newScriptedGateway(t *testing.T) *scriptedGateway {
	g := &scriptedGateway{conns: make(chan *websocket.Conn, 4), asked: make(chan struct{}, 16)}
	page := web.Handler()
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /app.js", page)
	mux.Handle("GET /wire.js", page)
	up := websocket.Upgrader{Subprotocols: []string{protocol.SubprotocolBinary}}
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		g.conns <- ws
	})
	mux.HandleFunc("/api/canvas", func(w http.ResponseWriter, r *http.Request) {
		if gate := g.gate.Load(); gate != nil {
			g.asked <- struct{}{}
			select {
			case <-*gate:
			case <-r.Context().Done():
				return
			}
		}
		body := g.snapshot.Load().(string)
		if strings.Contains(r.Header.Get("Accept"), "application/octet-stream") {
			// The page's form: the same snapshot as RGB bytes.
			writeBinarySnapshot(t, w, body)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	})
	g.srv = httptest.NewServer(mux)
	t.Cleanup(g.srv.Close)
	return g
}

// writeBinarySnapshot answers the JSON snapshot js in the binary form, as
// the API does for Accept: application/octet-stream.
func writeBinarySnapshot(t *testing.T, w http.ResponseWriter, js string) {
	var c api.CanvasJSON
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Errorf("scripted snapshot: %v", err)
		return
	}
	rgb := bytes.Repeat([]byte{0xFF}, c.Width*c.Height*3)
	for _, p := range c.Pixels {
		col, err := canvas.ParseColor(p.Color)
		if err != nil {
			t.Errorf("scripted snapshot: %v", err)
			return
		}
		i := (p.GY*c.Width + p.GX) * 3
		rgb[i], rgb[i+1], rgb[i+2] = col.RGB()
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Canvas-Width", strconv.Itoa(c.Width))
	h.Set("X-Canvas-Height", strconv.Itoa(c.Height))
	h.Set("X-Stream-Epoch", c.Position.Epoch)
	h.Set("X-Stream-Seq", strconv.FormatUint(c.Position.Seq, 10))
	_, _ = w.Write(rgb)
}

// send writes v, a frame as its JSON twin, to the page in the binary
// subprotocol the page speaks, through the Go encoder the gateway shares.
func (g *scriptedGateway) send(t *testing.T, ws *websocket.Conn, v any) {
	t.Helper()
	if ws.Subprotocol() != protocol.SubprotocolBinary {
		t.Fatalf("the page did not ask for %s (negotiated %q)", protocol.SubprotocolBinary, ws.Subprotocol())
	}
	js, _ := json.Marshal(v)
	var f protocol.ServerFrame
	if err := json.Unmarshal(js, &f); err != nil {
		t.Fatalf("scripted frame %s: %v", js, err)
	}
	b, err := protocol.EncodeBinary(f)
	if err != nil {
		t.Fatalf("scripted frame %s: %v", js, err)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		t.Fatalf("send to the page: %v", err)
	}
}

func pixelEvents(evs ...map[string]any) map[string]any {
	for _, e := range evs {
		e["committedAt"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	return map[string]any{"type": "events", "events": evs}
}

// TestBrowserEventsDuringSnapshotStayApplied drives the real page through
// a scripted gateway: after a resync to a new epoch the snapshot request is
// held while two events arrive, then answered with a snapshot read after the
// first event and before the second (position e2:1). The page must replace
// its canvas with the snapshot — the old history's (2,2) disappears — and
// apply the second event on top: (1,1) shows the event's colour, not the
// snapshot's older one.
func TestBrowserEventsDuringSnapshotStayApplied(t *testing.T) {
	g, pg := openScriptedPage(t)
	var ws *websocket.Conn
	select {
	case ws = <-g.conns:
	case <-time.After(30 * time.Second):
		t.Fatal("the page never opened /ws")
	}
	defer ws.Close()
	g.send(t, ws, map[string]any{"type": "hello", "epoch": "e1", "seq": 0, "resumed": false})
	waitState(t, pg, "connected")
	g.send(t, ws, pixelEvents(
		map[string]any{"seq": 1, "id": "a", "gx": 1, "gy": 1, "color": "#AAAAAA", "version": 3},
		map[string]any{"seq": 2, "id": "b", "gx": 2, "gy": 2, "color": "#BBBBBB", "version": 1},
	))
	waitPixel(t, pg, 1, 1, "#AAAAAA")
	waitPixel(t, pg, 2, 2, "#BBBBBB")

	gate := make(chan struct{})
	g.gate.Store(&gate)
	g.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e2","seq":1},"pixels":[{"gx":3,"gy":3,"color":"#CCCCCC","version":1},{"gx":1,"gy":1,"color":"#444444","version":1}]}`)
	g.send(t, ws, map[string]any{"type": "resync", "reason": "epoch", "epoch": "e2", "seq": 0})
	select {
	case <-g.asked:
	case <-time.After(30 * time.Second):
		t.Fatal("the page did not reload the snapshot after the resync")
	}
	g.send(t, ws, pixelEvents(
		map[string]any{"seq": 1, "id": "c", "gx": 3, "gy": 3, "color": "#CCCCCC", "version": 1},
		map[string]any{"seq": 2, "id": "d", "gx": 1, "gy": 1, "color": "#DDDDDD", "version": 2},
	))
	waitPixel(t, pg, 3, 3, "#CCCCCC") // applied live (the page still holds (1,1) at v3)
	g.gate.Store(nil)
	close(gate)
	waitPixel(t, pg, 2, 2, "#FFFFFF") // replaced: the old history is gone
	waitPixel(t, pg, 1, 1, "#DDDDDD")
	waitPixel(t, pg, 3, 3, "#CCCCCC")
	waitState(t, pg, "connected")
	if pos, _ := chromedp.Run(pg, chromedp.Evaluate[string](`document.getElementById('pos').textContent`)); pos != "e2:2" {
		t.Errorf("page position %q, want e2:2", pos)
	}
}

// TestBrowserDecoderMatchesVectors runs the page's binary decoder
// (wire.js) in the browser against the test vectors the Go codec is held
// to (internal/protocol/testdata): each valid message decodes to its JSON
// twin, each invalid one is refused.
func TestBrowserDecoderMatchesVectors(t *testing.T) {
	v := protocoltest.Load(t)
	raw := v.Raw
	_, pg := openScriptedPage(t)
	// Each valid vector's decoding as JSON, or "error: …"; then "refused"
	// or "accepted …" for each invalid one.
	js := `(async () => {
	  const w = await import('/wire.js'), v = ` + string(raw) + `, out = [];
	  const bytes = (h) => new Uint8Array((h.match(/../g) || []).map((x) => parseInt(x, 16)));
	  for (const x of v.valid) { try { out.push(JSON.stringify(w.decode(bytes(x.hex)))); } catch (e) { out.push('error: ' + e.message); } }
	  for (const x of v.invalid) { try { out.push('accepted ' + JSON.stringify(w.decode(bytes(x.hex)))); } catch (e) { out.push('refused'); } }
	  return out; })()`
	got, err := chromedp.Run(pg, chromedp.Evaluate[[]string](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(v.Valid)+len(v.Invalid) {
		t.Fatalf("%d results for %d vectors: %v", len(got), len(v.Valid)+len(v.Invalid), got)
	}
	for i, x := range v.Valid {
		var want, dec protocol.ServerFrame
		if err := json.Unmarshal(x.Frame, &want); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(got[i]), &dec); err != nil {
			t.Errorf("%s: the page's decoder gave %s", x.Name, got[i])
			continue
		}
		if !reflect.DeepEqual(dec, want) {
			t.Errorf("%s: the page decoded %s as %s, want %s", x.Name, x.Hex, got[i], x.Frame)
		}
	}
	for i, x := range v.Invalid {
		if r := got[len(v.Valid)+i]; r != "refused" {
			t.Errorf("%s: the page's decoder %s %s", x.Name, r, x.Hex)
		}
	}
}

// The Makefile's ensure-chromium accepts exactly the browsers the suite
// looks for, in the same order: otherwise `make e2e` could pass its check
// with a browser the suite then does not find, or the other way round.
func TestBrowserNamesMatchMakefile(t *testing.T) {
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CHROMIUM_NAMES := "); ok {
			if got := strings.Split(strings.TrimSpace(v), "|"); !slices.Equal(got, browserNames) {
				t.Errorf("Makefile CHROMIUM_NAMES %v, the suite looks for %v", got, browserNames)
			}
			return
		}
	}
	t.Error("Makefile has no CHROMIUM_NAMES line")
}

// openScriptedPage opens the canvas page in a browser tab on a scripted
// gateway whose snapshot is an empty 8×8 canvas at e1:0; the tab closes
// when the test ends.
func openScriptedPage(t *testing.T) (*scriptedGateway, context.Context) {
	t.Helper()
	g := newScriptedGateway(t)
	g.snapshot.Store(`{"width":8,"height":8,"position":{"epoch":"e1","seq":0},"pixels":[]}`)
	pg, cancel := chromedp.NewContext(browser(t))
	t.Cleanup(cancel)
	if err := chromedp.Do(pg, chromedp.Navigate(g.srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	return g, pg
}
