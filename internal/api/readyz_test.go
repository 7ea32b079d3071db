package api_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pixelflow/pixelflow/internal/api"
)

// TestReadyzWarnsOnlyAfterReady: a check failing before /readyz ever
// answered ready is a process starting (every probe sees it on every
// start) and is logged as information; once it has been ready, a failing
// check is a warning. Either way the answer is 503 naming the check's code.
func TestReadyzWarnsOnlyAfterReady(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	var logs bytes.Buffer
	h := api.NewHealth([]api.Check{{Name: "store", Fn: func(context.Context) error {
		if fail.Load() {
			return &api.CheckError{Code: "unreachable", Err: errors.New("dial tcp: refused")}
		}
		return nil
	}}}, slog.New(slog.NewTextHandler(&logs, nil)))
	probe := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		line := logs.String()
		logs.Reset()
		return rec.Code, line
	}
	if code, line := probe(); code != http.StatusServiceUnavailable || !strings.Contains(line, `level=INFO msg="not ready yet" check=store code=unreachable`) {
		t.Errorf("starting: %d, logged %q; want 503 and an INFO line", code, line)
	}
	fail.Store(false)
	if code, line := probe(); code != http.StatusOK || line != "" {
		t.Errorf("ready: %d, logged %q", code, line)
	}
	fail.Store(true)
	if code, line := probe(); code != http.StatusServiceUnavailable || !strings.Contains(line, `level=WARN msg="readiness check failed" check=store code=unreachable`) {
		t.Errorf("after ready: %d, logged %q; want 503 and a WARN line", code, line)
	}
}
