package api_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/api"
	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/store"
)

// placedStore answers every placement with one fixed event.
type placedStore struct{ ev canvas.Event }

func (s placedStore) Place(context.Context, canvas.Placement, string, store.Trace) (canvas.Event, bool, error) {
	return s.ev, false, nil
}

func (s placedStore) Snapshot(context.Context) (canvas.Position, []store.Pixel, error) {
	return canvas.Position{}, nil, nil
}

// The 201 body of a placement, pinned byte for byte: it is the event as
// docs/protocol.md shows it, without the fields only the stream assigns.
func TestPlaceAnswersTheEvent(t *testing.T) {
	ev := canvas.Event{ID: "65f1", Kind: canvas.KindPixel, GX: 10, GY: 20, Color: 0xFF8800, Version: 3,
		CommittedAt: time.Date(2026, 11, 23, 10, 15, 4, 123456789, time.UTC)}
	a, err := api.New(placedStore{ev}, api.Options{Size: canvas.Size{Width: 64, Height: 64}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/pixels", strings.NewReader(`{"gx":10,"gy":20,"color":"#FF8800"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Result().Body)
	const want = `{"id":"65f1","gx":10,"gy":20,"color":"#FF8800","version":3,"committedAt":"2026-11-23T10:15:04.123456789Z"}` + "\n"
	if rec.Code != http.StatusCreated || string(body) != want {
		t.Fatalf("got %d %s\nwant 201 %s", rec.Code, body, want)
	}
}
