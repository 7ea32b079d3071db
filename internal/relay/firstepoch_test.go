package relay_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
	"github.com/pixelflow/pixelflow/internal/relay"
)

// TestFirstEpochIsNoWarning: a canvas's first start (no stream, no
// sequencer epoch) starts its first epoch and logs it as information;
// an epoch that ends because Redis lost the stream still warns.
func TestFirstEpochIsNoWarning(t *testing.T) {
	e := newEnv(t, false)
	var logs logbuf.Buffer
	r, _, _ := e.startRelay("r", relay.Options{RepublishWindow: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	e.write(5)
	e.waitDrained(5 * time.Second)
	if out := logs.String(); strings.Contains(out, "level=WARN") || !strings.Contains(out, "started the stream's first epoch") {
		t.Fatalf("first start: want the first epoch logged as information, no warning:\n%s", out)
	}
	first, _ := e.st.Tail(context.Background())
	if err := e.srv.Restart(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	e.write(1)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), `level=WARN msg="relay: STARTED NEW STREAM EPOCH; clients will resync"`) {
		if time.Now().After(deadline) {
			t.Fatalf("Redis lost the stream of epoch %s: no warning:\n%s", first.Epoch, logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := r.Status(); st.EpochChanges != 2 {
		t.Errorf("epoch changes %d, want 2", st.EpochChanges)
	}
}
