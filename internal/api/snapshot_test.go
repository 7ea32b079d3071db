package api_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// slowStore counts snapshot builds, how many run at once at most, and takes
// its time over each.
type slowStore struct {
	fakeStore
	delay           time.Duration
	builds, running atomic.Int64
	maxRunning      atomic.Int64
	pixels          []store.Pixel
}

func (s *slowStore) Snapshot(ctx context.Context) (canvas.Position, []store.Pixel, error) {
	s.builds.Add(1)
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for {
		m := s.maxRunning.Load()
		if n <= m || s.maxRunning.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return canvas.Position{}, nil, ctx.Err()
	}
	return canvas.Position{Epoch: "e", Seq: 7}, s.pixels, nil
}

func getCanvas(t *testing.T, h http.Handler, accept, inm string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/canvas", nil)
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", "gzip")
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// Concurrent snapshot requests share builds: 100 requests cost at most two
// builds (the one running when they arrive cannot serve those that came
// after it started, the next one serves them all), one at a time.
func TestConcurrentSnapshotsShareBuilds(t *testing.T) {
	s := &slowStore{delay: 300 * time.Millisecond, pixels: []store.Pixel{{GX: 1, GY: 2, Color: 0xFF0000, Version: 3}}}
	a, err := api.New(s, api.Options{Size: canvas.Size{Width: 8, Height: 8}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			accept := "application/json"
			if i%2 == 0 {
				accept = "application/octet-stream"
			}
			if rec := getCanvas(t, a, accept, ""); rec.Code != http.StatusOK {
				t.Errorf("GET: %d", rec.Code)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := s.builds.Load(); n > 2 {
		t.Errorf("100 concurrent requests ran %d snapshot builds, want at most 2", n)
	}
	if m := s.maxRunning.Load(); m > 1 {
		t.Errorf("%d builds ran at once, bound 1", m)
	}
}

// With a key, one build serves every request under it, its ETag is the
// key, If-None-Match answers 304 without a build, and a new key builds again.
func TestSnapshotKeyCachesAndRevalidates(t *testing.T) {
	s := &slowStore{pixels: []store.Pixel{{GX: 1, GY: 2, Color: 0xFF0000, Version: 3}}}
	var key atomic.Value
	key.Store("e:7:7")
	a, err := api.New(s, api.Options{Size: canvas.Size{Width: 8, Height: 8},
		SnapshotKey: func(context.Context) (string, error) { return key.Load().(string), nil }})
	if err != nil {
		t.Fatal(err)
	}
	first := getCanvas(t, a, "application/octet-stream", "")
	etag := first.Header().Get("ETag")
	if first.Code != http.StatusOK || etag == "" || first.Header().Get("Cache-Control") != "no-cache" {
		t.Fatalf("first: %d ETag %q Cache-Control %q", first.Code, etag, first.Header().Get("Cache-Control"))
	}
	for range 5 {
		if rec := getCanvas(t, a, "application/octet-stream", ""); rec.Code != http.StatusOK || rec.Header().Get("ETag") != etag {
			t.Fatalf("again: %d %q", rec.Code, rec.Header().Get("ETag"))
		}
	}
	if rec := getCanvas(t, a, "application/octet-stream", etag); rec.Code != http.StatusNotModified || rec.Body.Len() != 0 {
		t.Fatalf("If-None-Match: %d with %d bytes, want 304", rec.Code, rec.Body.Len())
	}
	if rec := getCanvas(t, a, "application/json", ""); rec.Code != http.StatusOK || rec.Header().Get("ETag") == etag {
		t.Fatalf("the JSON form has the binary's ETag %q", rec.Header().Get("ETag"))
	}
	if n := s.builds.Load(); n != 1 {
		t.Fatalf("%d builds under one key, want 1", n)
	}
	key.Store("e:8:8")
	rec := getCanvas(t, a, "application/octet-stream", etag)
	if rec.Code != http.StatusOK || rec.Header().Get("ETag") == etag || s.builds.Load() != 2 {
		t.Fatalf("after the key moved: %d ETag %q, %d builds; want a new build", rec.Code, rec.Header().Get("ETag"), s.builds.Load())
	}
}

// The JSON form written by hand is what encoding/json makes of CanvasJSON,
// and a client without gzip gets it inflated.
func TestSnapshotJSONForm(t *testing.T) {
	px := []store.Pixel{{GX: 1, GY: 2, Color: 0xFF0000, Version: 3}, {GX: 7, GY: 7, Color: 0x00A0FF, Version: 12}, {GX: 9, GY: 9, Color: 1, Version: 1}}
	a, err := api.New(&slowStore{pixels: px}, api.Options{Size: canvas.Size{Width: 8, Height: 8}})
	if err != nil {
		t.Fatal(err)
	}
	rec := getCanvas(t, a, "", "")
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	want, _ := json.Marshal(api.CanvasJSON{Width: 8, Height: 8, Position: canvas.Position{Epoch: "e", Seq: 7},
		Pixels: []api.PixelJSON{{GX: 1, GY: 2, Color: "#FF0000", Version: 3}, {GX: 7, GY: 7, Color: "#00A0FF", Version: 12}}})
	if strings.TrimSpace(string(got)) != string(want) {
		t.Fatalf("JSON form\n%s\nwant\n%s", got, want)
	}
	req := httptest.NewRequest(http.MethodGet, "/api/canvas", nil)
	plain := httptest.NewRecorder()
	a.ServeHTTP(plain, req)
	if plain.Header().Get("Content-Encoding") != "" || strings.TrimSpace(plain.Body.String()) != string(want) {
		t.Fatalf("without gzip: %q %s", plain.Header().Get("Content-Encoding"), plain.Body)
	}
}

// cancelStore fails placements the way the store does when the caller's
// context ends.
type cancelStore struct{ fakeStore }

func (*cancelStore) Place(ctx context.Context, _ canvas.Placement, _ string, _ store.Trace) (canvas.Event, bool, error) {
	<-ctx.Done()
	return canvas.Event{}, false, ctx.Err()
}

// A request its client abandons is logged at debug, not as an internal
// error.
func TestCanceledRequestIsNotAnError(t *testing.T) {
	var logs bytes.Buffer
	a, err := api.New(&cancelStore{}, api.Options{Size: canvas.Size{Width: 8, Height: 8},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/pixels", strings.NewReader(`{"gx":1,"gy":2,"color":"#ABCDEF"}`))
	req.Header.Set("Content-Type", "application/json")
	time.AfterFunc(20*time.Millisecond, cancel)
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	var line struct{ Level, Code string }
	_ = json.Unmarshal(logs.Bytes(), &line)
	if line.Level != "DEBUG" || strings.Contains(logs.String(), `"code":"internal"`) {
		t.Errorf("a canceled request was logged as %s", logs.String())
	}
}
