package gateway_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/gatewaytest"
	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
)

// TestFirstEpochIsNoWarning: a gateway that joined a canvas's stream
// before its first epoch (every first start: the gateway is up before the
// relay) loses its group when the relay starts that epoch. It joins the
// new stream, and logs that as information, not a warning; a later epoch
// change, which makes its clients resync, still warns.
func TestFirstEpochIsNoWarning(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := newRedis(t, srv)
	var logs logbuf.Buffer
	o := opts(rdb, "gw")
	o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	gw := gatewaytest.Start(t, o, nil)
	gw.WaitReady(t, "")
	time.Sleep(200 * time.Millisecond) // into its blocking read
	pub := gatewaytest.NewPublisher(t, newRedis(t, srv), "t")
	pub.StartEpoch("e1")
	gw.WaitReady(t, "e1")
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the first epoch was logged as a warning:\n%s", logs.String())
	}
	time.Sleep(200 * time.Millisecond)
	pub.StartEpoch("e2")
	gw.WaitReady(t, "e2")
	gatewaytest.Eventually(t, waitFor, func() error {
		if !strings.Contains(logs.String(), "level=WARN") {
			return errors.New("no warning logged for the second epoch")
		}
		return nil
	})
}
