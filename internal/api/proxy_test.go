package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
)

func proxyTo(t *testing.T, target string) http.Handler {
	t.Helper()
	h, err := api.NewProxy(api.ProxyOptions{Target: target})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %d %q is not the API's error body: %v", rec.Code, rec.Body, err)
	}
	return body.Error.Code
}

// TestProxyForwardsAndRecordsTheHop: the body and path reach the api, and
// the client's address is appended to X-Forwarded-For and Forwarded after
// the hops already recorded.
func TestProxyForwardsAndRecordsTheHop(t *testing.T) {
	var got *http.Request
	var body string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		w.WriteHeader(http.StatusCreated)
	}))
	defer up.Close()
	req := httptest.NewRequest(http.MethodPost, "/api/pixels", strings.NewReader(`{"gx":1}`))
	req.RemoteAddr = "192.0.2.7:5555"
	req.Header.Set("X-Forwarded-For", "198.51.100.1")
	req.Header.Set("Forwarded", "for=198.51.100.1")
	rec := httptest.NewRecorder()
	proxyTo(t, up.URL).ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated || got == nil {
		t.Fatalf("answer %d, api reached: %v", rec.Code, got != nil)
	}
	if got.URL.Path != "/api/pixels" || body != `{"gx":1}` {
		t.Errorf("api got %s %q", got.URL.Path, body)
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "198.51.100.1, 192.0.2.7" {
		t.Errorf("X-Forwarded-For %q", xff)
	}
	if f := got.Header.Get("Forwarded"); f != "for=198.51.100.1, for=192.0.2.7" {
		t.Errorf("Forwarded %q", f)
	}
}

// TestProxyRefusesWhatItCannotForward: an oversized body is refused here
// (the api never sees it), an unreachable api is a 502 "unavailable" with
// Retry-After, and a proxy without a target is not built.
func TestProxyRefusesWhatItCannotForward(t *testing.T) {
	var reached atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached.Add(1) }))
	defer up.Close()
	rec := httptest.NewRecorder()
	proxyTo(t, up.URL).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/pixels", strings.NewReader(strings.Repeat("x", 5000))))
	if rec.Code != http.StatusRequestEntityTooLarge || errorCode(t, rec) != "too_large" || reached.Load() != 0 {
		t.Errorf("oversized body: %d %q, api reached %d times", rec.Code, rec.Body, reached.Load())
	}

	down := httptest.NewServer(http.NotFoundHandler())
	addr := down.URL
	down.Close()
	rec = httptest.NewRecorder()
	proxyTo(t, addr).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/pixels", strings.NewReader(`{}`)))
	if rec.Code != http.StatusBadGateway || errorCode(t, rec) != canvas.EUnavailable || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("api down: %d %q Retry-After %q", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}

	if _, err := api.NewProxy(api.ProxyOptions{}); err == nil {
		t.Error("a proxy without a target was built")
	}
}

// TestTailKeyNamesTailAndPublished: the key is the tail and the published
// position, and after the tail fails it is not read again for a second.
func TestTailKeyNamesTailAndPublished(t *testing.T) {
	var reads atomic.Int32
	fail := atomic.Bool{}
	key := api.TailKey(func(context.Context) (canvas.Position, error) {
		reads.Add(1)
		if fail.Load() {
			return canvas.Position{}, errors.New("redis down")
		}
		return canvas.Position{Epoch: "e1", Seq: 42}, nil
	}, func(context.Context) (canvas.Position, error) { return canvas.Position{Epoch: "e1", Seq: 40}, nil })
	if k, err := key(context.Background()); err != nil || k != "e1:42:40" {
		t.Fatalf("key %q %v, want e1:42:40", k, err)
	}
	fail.Store(true)
	if _, err := key(context.Background()); err == nil {
		t.Fatal("a failed tail gave a key")
	}
	fail.Store(false)
	before := reads.Load()
	if _, err := key(context.Background()); err == nil || reads.Load() != before {
		t.Fatalf("right after a failure: err %v, tail read again: %v", err, reads.Load() != before)
	}
}
