package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

func getRegions(t *testing.T, h http.Handler, query, accept, inm string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/canvas"+query, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if inm != "" {
		req.Header.Set("If-None-Match", inm)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// regionStore answers with pixels in regions 0, 1, 2, 64 and 66 of a
// 200×200 canvas, one outside it, and position e:7.
func regionAPI(t *testing.T, key func(context.Context) (string, error)) (*api.API, *slowStore) {
	t.Helper()
	s := &slowStore{pixels: []store.Pixel{
		{GX: 1, GY: 1, Color: 0x000001, Version: 1},     // region 0
		{GX: 63, GY: 63, Color: 0x000002, Version: 2},   // region 0
		{GX: 64, GY: 0, Color: 0x000003, Version: 3},    // region 1
		{GX: 130, GY: 5, Color: 0x000004, Version: 4},   // region 2
		{GX: 0, GY: 64, Color: 0x000005, Version: 5},    // region 64
		{GX: 190, GY: 127, Color: 0x000006, Version: 6}, // region 66
		{GX: 150, GY: 70, Color: 0x000007, Version: 7},  // region 66
		{GX: 250, GY: 5, Color: 0x000008, Version: 8},   // outside the canvas
	}}
	a, err := api.New(s, api.Options{Size: canvas.Size{Width: 200, Height: 200}, SnapshotKey: key})
	if err != nil {
		t.Fatal(err)
	}
	return a, s
}

// A region snapshot lists exactly the pixels inside the regions asked for,
// with the whole snapshot's position and size, in any order of the list.
func TestRegionSnapshotListsOnlyItsRegions(t *testing.T) {
	a, _ := regionAPI(t, nil)
	for _, q := range []string{"?regions=2,66", "?regions=66,2"} {
		rec := getRegions(t, a, q, "application/json", "")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", q, rec.Code, rec.Body)
		}
		var got api.CanvasJSON
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v %s", q, err, rec.Body)
		}
		if got.Width != 200 || got.Height != 200 || got.Position != (canvas.Position{Epoch: "e", Seq: 7}) {
			t.Fatalf("%s: size %dx%d position %v", q, got.Width, got.Height, got.Position)
		}
		want := []api.PixelJSON{
			{GX: 130, GY: 5, Color: "#000004", Version: 4},
			{GX: 190, GY: 127, Color: "#000006", Version: 6},
			{GX: 150, GY: 70, Color: "#000007", Version: 7},
		}
		if b, w := mustJSON(got.Pixels), mustJSON(want); b != w {
			t.Fatalf("%s: pixels %s\nwant %s", q, b, w)
		}
	}
	// No region: an empty list, still with the position.
	rec := getRegions(t, a, "?regions=", "", "")
	var none api.CanvasJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &none); err != nil || rec.Code != http.StatusOK || len(none.Pixels) != 0 || none.Position.Seq != 7 || !strings.Contains(rec.Body.String(), `"pixels":[]`) {
		t.Fatalf("regions= : %d %s", rec.Code, rec.Body)
	}
	// gzip when accepted, like the whole form.
	req := httptest.NewRequest(http.MethodGet, "/api/canvas?regions=0", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	gz := httptest.NewRecorder()
	a.ServeHTTP(gz, req)
	if gz.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("regions with gzip: Content-Encoding %q", gz.Header().Get("Content-Encoding"))
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// Bad region lists are 400s naming the problem, in the API's error shape.
func TestRegionSnapshotRefusesBadLists(t *testing.T) {
	a, s := regionAPI(t, nil)
	for _, c := range []struct{ query, accept, want string }{
		{"?regions=4", "", "outside"}, // 200 px wide: regions 0..3 per row, 4 is past it
		{"?regions=0,x", "", "not a region id"},
		{"?regions=01", "", "not a region id"},
		{"?regions=1,1", "", "named twice"},
		{"?regions=-1", "", "not a region id"},
		{"?regions=" + strings.Repeat("0,", 256) + "0", "", "at most 256"},
		{"?regions=0&regions=1", "", "given 2 times"},
		{"?regions=0", "application/octet-stream", "JSON only"},
	} {
		rec := getRegions(t, a, c.query, c.accept, "")
		var body struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || body.Error.Code != "invalid" || !strings.Contains(body.Error.Message, c.want) {
			t.Errorf("%.40s (Accept %q): %d %s, want 400 invalid naming %q", c.query, c.accept, rec.Code, rec.Body, c.want)
		}
	}
	if n := s.builds.Load(); n != 0 {
		t.Errorf("refused requests built %d snapshots", n)
	}
}

// A region snapshot reuses the key's build, its ETag never matches the
// whole snapshot's nor another list's, its own ETag answers 304, and a new
// key builds again.
func TestRegionSnapshotETag(t *testing.T) {
	var key atomic.Value
	key.Store("e:7:7")
	a, s := regionAPI(t, func(context.Context) (string, error) { return key.Load().(string), nil })
	whole := getRegions(t, a, "", "application/json", "")
	r266 := getRegions(t, a, "?regions=2,66", "application/json", "")
	r2 := getRegions(t, a, "?regions=2", "application/json", "")
	tags := map[string]string{"whole": whole.Header().Get("ETag"), "2,66": r266.Header().Get("ETag"), "2": r2.Header().Get("ETag")}
	seen := map[string]string{}
	for n, tag := range tags {
		if tag == "" {
			t.Fatalf("%s: no ETag", n)
		}
		if o, dup := seen[tag]; dup {
			t.Fatalf("%s and %s share ETag %s", n, o, tag)
		}
		seen[tag] = n
	}
	if n := s.builds.Load(); n != 1 {
		t.Fatalf("%d builds under one key, want 1 (region snapshots filter the whole build)", n)
	}
	if rec := getRegions(t, a, "?regions=66,2", "", tags["2,66"]); rec.Code != http.StatusNotModified {
		t.Fatalf("regions with their own ETag: %d, want 304", rec.Code)
	}
	if rec := getRegions(t, a, "?regions=2,66", "", tags["whole"]); rec.Code != http.StatusOK {
		t.Fatalf("regions with the whole snapshot's ETag: %d, want 200", rec.Code)
	}
	if rec := getRegions(t, a, "", "", tags["2,66"]); rec.Code != http.StatusOK {
		t.Fatalf("the whole snapshot with a region ETag: %d, want 200", rec.Code)
	}
	key.Store("e:8:8")
	if rec := getRegions(t, a, "?regions=2,66", "", tags["2,66"]); rec.Code != http.StatusOK || rec.Header().Get("ETag") == tags["2,66"] {
		t.Fatalf("after the key moved: %d ETag %q", rec.Code, rec.Header().Get("ETag"))
	}
}
