package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/client"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/harness/pace"
	"github.com/pixelflow/pixelflow/internal/protocol"
	"github.com/pixelflow/pixelflow/internal/store"
)

// Writer places pixels through the API and records every outcome.
type Writer struct {
	API  string
	Rec  *history.Recorder
	HTTP *http.Client
	// Region bounds the pixels written to [0,Region)²: a small region makes
	// pixels be written many times, so versions and ordering get exercised.
	Region int
	// Retries is how often a write whose outcome is unknown (no answer, 5xx)
	// is sent again with the same Idempotency-Key before it is recorded as
	// unknown.
	Retries int
	// OnSend, when set, is called with each write's colour (unique to the
	// write) just before it is first sent, so a load test can time a write
	// from its sending to its arrival at the clients.
	OnSend func(color canvas.Color, at time.Time)

	keys  atomic.Int64
	acked atomic.Int64
	mu    sync.Mutex
	last  history.Write
}

// Last is the writer's most recently acknowledged write.
func (w *Writer) Last() history.Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Acked is how many writes of this writer were acknowledged so far.
func (w *Writer) Acked() int { return int(w.acked.Load()) }

// NewWriter returns a writer with a 5 s request timeout.
func NewWriter(apiURL string, rec *history.Recorder, region int) *Writer {
	return &Writer{API: apiURL, Rec: rec, Region: region, Retries: 3, HTTP: &http.Client{Timeout: 5 * time.Second}}
}

// PlaceRandom writes a fresh colour at a random pixel of the region.
func (w *Writer) PlaceRandom(ctx context.Context, rng *rand.Rand) history.Write {
	return w.Place(ctx, rng.IntN(w.Region), rng.IntN(w.Region))
}

// Place writes a fresh colour at (gx, gy), retrying unknown outcomes with
// the same Idempotency-Key, and records the final outcome.
func (w *Writer) Place(ctx context.Context, gx, gy int) history.Write {
	rec := history.Write{GX: gx, GY: gy, Color: w.Rec.NextColor(), Start: time.Now()}
	// A key makes retries safe; without retries it would only grow the
	// store's idempotency collection.
	key := ""
	if w.Retries > 0 {
		key = fmt.Sprintf("w-%d-%d", time.Now().UnixNano(), w.keys.Add(1))
	}
	body := fmt.Sprintf(`{"gx":%d,"gy":%d,"color":%q}`, gx, gy, rec.Color.String())
	if w.OnSend != nil {
		w.OnSend(rec.Color, time.Now())
	}
	for attempt := 0; ; attempt++ {
		var ev protocol.Event
		status, err := w.Post(ctx, body, key, &ev)
		switch {
		case err == nil && status == http.StatusCreated:
			rec.Outcome, rec.EventID, rec.Version = history.OK, ev.ID, ev.Version
			w.acked.Add(1)
			w.mu.Lock()
			w.last = rec
			w.mu.Unlock()
		case err == nil && status < 500:
			rec.Outcome = history.Failed // the API promises 4xx writes nothing
		default:
			rec.Outcome = history.Unknown
		}
		if rec.Outcome != history.Unknown || attempt >= w.Retries || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(100*(attempt+1)) * time.Millisecond):
		}
	}
	rec.End = time.Now()
	w.Rec.Write(rec)
	return rec
}

// Post sends one raw request body to POST /api/pixels (with an Idempotency-Key
// when key is not empty), decodes a 2xx answer into out and returns the
// status: for suites that send what PlaceRandom would not.
func (w *Writer) Post(ctx context.Context, body, key string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.API+"/api/pixels", bytes.NewReader([]byte(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := w.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusCreated {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return 0, fmt.Errorf("decode 201: %w", err)
		}
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode, nil
}

// Run has n goroutines write total pixels between them (or until ctx ends)
// and returns how many of them were acknowledged.
func (w *Writer) Run(ctx context.Context, n, total int) int {
	var acked atomic.Int64
	rngs := make([]*rand.Rand, n)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
	}
	pace.Pacer{Total: total, Workers: n}.Run(ctx, func(i int, _ time.Time) {
		switch w.PlaceRandom(ctx, rngs[i]).Outcome {
		case history.OK:
			acked.Add(1)
		case history.Unknown:
			time.Sleep(20 * time.Millisecond) // the API is down: don't spin
		}
	})
	return int(acked.Load())
}

// Watchers are WebSocket clients spread over the gateways, each feeding
// what it receives into the history.
type Watchers struct {
	Clients []*client.Client
	names   []string
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	delivered atomic.Int64
}

// Delivered counts pixel events received by all clients (duplicates too).
func (w *Watchers) Delivered() int64 { return w.delivered.Load() }

func (w *Watchers) observe(r client.Received) {
	if r.Event.Kind != canvas.KindCanary && !r.Dup {
		w.delivered.Add(1)
	}
}

// Watch connects n clients round-robin to the cluster's gateways (each
// with the others as alternates, so a dead gateway's clients move on) and
// waits until each has its first snapshot, read from the api.
func Watch(ctx context.Context, rec *history.Recorder, t Target, n int, opts ...WatchOption) (*Watchers, error) {
	gateways := t.Gateways
	ctx, cancel := context.WithCancel(ctx)
	w := &Watchers{cancel: cancel}
	for i := range n {
		name := fmt.Sprintf("client-%02d", i)
		rec.Client(name)
		var alternates []string
		for j := 1; j < len(gateways); j++ {
			alternates = append(alternates, gateways[(i+j)%len(gateways)])
		}
		o := client.Options{
			BaseURL:     gateways[i%len(gateways)],
			Alternates:  alternates,
			SnapshotURL: t.API,
			Name:        name,
			OnEvent:     func(r client.Received) { rec.Event(name, r.Event); w.observe(r) },
			OnSnapshot: func(px map[[2]int]client.CanvasPixel) {
				v := make(map[[2]int]int64, len(px))
				for p, cp := range px {
					v[p] = cp.Version
				}
				rec.Snapshot(name, time.Now(), v)
			},
			OnRegions: func(ch client.RegionChange) { rec.Regions(name, Subscription(ch)) },
		}
		for _, opt := range opts {
			opt(i, &o)
		}
		cl := client.New(o)
		w.Clients = append(w.Clients, cl)
		w.names = append(w.names, name)
		w.wg.Add(1)
		go func() { defer w.wg.Done(); _ = cl.Run(ctx) }()
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, cl := range w.Clients {
		for cl.Stats().Snapshots == 0 {
			if time.Now().After(deadline) {
				w.Stop()
				return nil, fmt.Errorf("clients not connected with a snapshot within 30s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return w, nil
}

// CaughtUp waits until every client holds write wr (its pixel at wr's
// version or newer) and returns when that was; false if timeout passed.
func (w *Watchers) CaughtUp(ctx context.Context, wr history.Write, timeout time.Duration) (time.Time, bool) {
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, c := range w.Clients {
			if c.Canvas()[[2]int{wr.GX, wr.GY}].Version < wr.Version {
				all = false
				break
			}
		}
		now := time.Now()
		if all {
			return now, true
		}
		if now.After(deadline) || ctx.Err() != nil {
			return now, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WatchOption adjusts the options of client i before it starts.
type WatchOption func(i int, o *client.Options)

// Stop disconnects every client and waits for them.
func (w *Watchers) Stop() {
	w.cancel()
	w.wg.Wait()
}

// Snapshot reads GET /api/canvas (JSON).
func Snapshot(ctx context.Context, apiURL string) (api.CanvasJSON, error) {
	var s api.CanvasJSON
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/api/canvas", nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("get canvas: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("get canvas: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode canvas: %w", err)
	}
	return s, nil
}

// diff describes how a client's canvas differs from a snapshot ("" if equal).
func diff(got map[[2]int]client.CanvasPixel, want api.CanvasJSON) string {
	var d []string
	seen := 0
	for _, p := range want.Pixels {
		k := [2]int{p.GX, p.GY}
		g, ok := got[k]
		if ok {
			seen++
		}
		if !ok || g.Color.String() != p.Color || g.Version != p.Version {
			d = append(d, fmt.Sprintf("(%d,%d) has %s v%d, store %s v%d", p.GX, p.GY, g.Color, g.Version, p.Color, p.Version))
		}
	}
	if extra := len(got) - seen; extra > 0 {
		d = append(d, strconv.Itoa(extra)+" pixels the store does not have")
	}
	return history.Differences(d)
}

// Subscription is a client's subscription step as the history records it.
func Subscription(ch client.RegionChange) history.Subscription {
	return history.Subscription{Kind: history.SubscriptionKind(ch.Kind), All: ch.All, Regions: ch.Regions,
		Unsubscribe: ch.Unsubscribe, Position: ch.Position, Since: ch.Since, At: ch.At}
}

func histPixels(m map[[2]int]client.CanvasPixel) map[[2]int]history.Pixel {
	out := make(map[[2]int]history.Pixel, len(m))
	for p, px := range m {
		out[p] = history.Pixel{Color: px.Color, Version: px.Version}
	}
	return out
}

func snapPixels(s api.CanvasJSON) map[[2]int]history.Pixel {
	out := make(map[[2]int]history.Pixel, len(s.Pixels))
	for _, p := range s.Pixels {
		c, _ := canvas.ParseColor(p.Color)
		out[[2]int{p.GX, p.GY}] = history.Pixel{Color: c, Version: p.Version}
	}
	return out
}

// Verify ends a run the same way for every suite: a final write must
// succeed; then every client must converge to GET /api/canvas within
// drain; the snapshot must agree with the history (each pixel's newest
// acknowledged write); then the checker judges each client. It returns the
// report, already printed to logf.
func Verify(ctx context.Context, name string, t Target, rec *history.Recorder, w *Watchers, drain time.Duration, logf func(string, ...any)) *history.Report {
	start := time.Now()
	var notes []string
	final := NewWriter(t.API, rec, 1)
	final.Retries = 50 // ~2 minutes of backoff at most: the system must recover
	if fw := final.Place(ctx, 0, 0); fw.Outcome != history.OK {
		notes = append(notes, "the final write after the run did not succeed (outcome "+fw.Outcome.String()+")")
	}

	var snap api.CanvasJSON
	diverged := map[string]string{}
	deadline := time.Now().Add(drain)
	for {
		var err error
		snap, err = Snapshot(ctx, t.API)
		if err == nil {
			clear(diverged)
			for i, cl := range w.Clients {
				d := ""
				if all, regions := cl.Regions(); all {
					d = diff(cl.Canvas(), snap)
				} else {
					d = history.CanvasDiff(histPixels(cl.Canvas()), snapPixels(snap), false, regions)
				}
				if d != "" {
					diverged[w.names[i]] = d
				}
			}
			if len(diverged) == 0 {
				break
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			if err != nil {
				notes = append(notes, "snapshot after the drain: "+err.Error())
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep := rec.NewReport(name)
	rep.Provider = t.Describe
	rep.Duration = time.Since(start)
	for n, d := range diverged {
		rep.Diverged = append(rep.Diverged, fmt.Sprintf("%s did not converge within %s: %s", n, drain, d))
	}
	sort.Strings(rep.Diverged)
	rep.Notes = append(notes, storeAgrees(snap, rec.Writes())...)
	if t.MongoURI != "" {
		rep.Notes = append(rep.Notes, databaseAgrees(ctx, t.MongoURI, snap)...)
	}
	var buf bytes.Buffer
	rep.Print(&buf)
	logf("%s", buf.String())
	return rep
}

// storeAgrees checks the snapshot against the history: at every pixel the
// store holds a version at least the newest acknowledged one, and where the
// versions are equal, that write's colour.
func storeAgrees(snap api.CanvasJSON, writes []history.Write) []string {
	newest := map[[2]int]history.Write{}
	for _, w := range writes {
		k := [2]int{w.GX, w.GY}
		if w.Outcome == history.OK && w.Version > newest[k].Version {
			newest[k] = w
		}
	}
	store := map[[2]int]api.PixelJSON{}
	for _, p := range snap.Pixels {
		store[[2]int{p.GX, p.GY}] = p
	}
	var out []string
	for k, w := range newest {
		p, ok := store[k]
		switch {
		case !ok || p.Version < w.Version:
			out = append(out, fmt.Sprintf("store lost the write %s v%d at (%d,%d): has v%d", w.Color, w.Version, k[0], k[1], p.Version))
		case p.Version == w.Version && p.Color != w.Color.String():
			out = append(out, fmt.Sprintf("store has %s at (%d,%d) v%d, the acknowledged write was %s", p.Color, k[0], k[1], p.Version, w.Color))
		}
		if len(out) >= 5 {
			break
		}
	}
	return out
}

// Target is a running deployment as the traffic sees it: where to write
// and where to watch.
type Target struct {
	API      string
	Gateways []string
	// Describe says what runs there (provider, store), for reports.
	Describe string
	// MongoURI, when set, lets Verify read the database directly as well
	// as through the API (the embedded store is only reachable through its
	// process).
	MongoURI string
}

// Backlog reads the api's outbox backlog from /api/health.
func Backlog(ctx context.Context, apiURL string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+"/api/health", nil)
	if err != nil {
		return -1, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1, err
	}
	defer resp.Body.Close()
	var h struct {
		Outbox struct {
			Backlog *int `json:"backlog"`
		} `json:"outbox"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Outbox.Backlog == nil {
		return -1, fmt.Errorf("health without outbox backlog (%v)", err)
	}
	return *h.Outbox.Backlog, nil
}

// databaseAgrees reads the pixels straight from MongoDB and compares them
// with the API's snapshot: the API must not show what the database does
// not hold, nor miss what it does. It only reads: the deployment owns the
// indexes and their TTLs (a drill may run with RETENTION=2s), so the
// checker opens the database without touching them.
func databaseAgrees(ctx context.Context, uri string, snap api.CanvasJSON) []string {
	st, err := store.Open(ctx, uri, "", store.Options{NoIndexes: true})
	if err != nil {
		return []string{"open the database to check it: " + err.Error()}
	}
	defer st.Close(context.WithoutCancel(ctx))
	_, pixels, err := st.Snapshot(ctx)
	if err != nil {
		return []string{"read the database's pixels: " + err.Error()}
	}
	db := map[[2]int]store.Pixel{}
	for _, p := range pixels {
		db[[2]int{p.GX, p.GY}] = p
	}
	var out []string
	for _, p := range snap.Pixels {
		d, ok := db[[2]int{p.GX, p.GY}]
		if !ok || d.Version != p.Version || d.Color.String() != p.Color {
			out = append(out, fmt.Sprintf("the API shows (%d,%d) %s v%d, the database %s v%d", p.GX, p.GY, p.Color, p.Version, d.Color, d.Version))
		}
		if len(out) >= 5 {
			break
		}
	}
	if len(db) != len(snap.Pixels) && len(out) < 5 {
		out = append(out, fmt.Sprintf("the database holds %d pixels, the API's snapshot %d", len(db), len(snap.Pixels)))
	}
	return out
}
