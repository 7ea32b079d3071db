package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
	"github.com/pixelflow/pixelflow/internal/relay"
)

// TestStoreBegunAgainBehindRedisTermStillDrains: the store began again (a
// reset, or a restore from a backup) while Redis kept its history, so the
// first lease of the new store has term 1 and Redis has seen term 7. The
// relay that holds the store's lease is the leader: it must move its term
// past Redis's and publish, not be fenced for ever with the outbox
// growing (an e2e store-reset test caught it: 14,515 events pending,
// "stream fenced" in a loop). The failpoint relay:keep-fenced-term
// switches the fix off, and the outbox then never drains.
func TestStoreBegunAgainBehindRedisTermStillDrains(t *testing.T) {
	for _, fixed := range []bool{true, false} {
		name := "fixed"
		if !fixed {
			name = "fix off"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, false)
			ctx := context.Background()
			if err := e.rdb.Set(ctx, e.st.Keys().Term, 7, 0).Err(); err != nil {
				t.Fatal(err)
			}
			var logs logbuf.Buffer
			opts := relay.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			if !fixed {
				opts.Failpoint = func(name string) error {
					if name == "relay:keep-fenced-term" {
						return errors.New("fix off")
					}
					return nil
				}
			}
			e.startRelay("r", opts)
			ids := e.write(20)
			deadline := time.Now().Add(5 * time.Second)
			for {
				n, _, err := e.store.Backlog(ctx)
				if err == nil && n == 0 {
					break
				}
				if time.Now().After(deadline) {
					if fixed {
						t.Fatalf("outbox still holds %d events 5 s on, behind Redis's term 7:\n%s", n, logs.String())
					}
					return // the defect, as the fix is switched off
				}
				time.Sleep(20 * time.Millisecond)
			}
			if !fixed {
				t.Fatal("with the fix off the outbox drained anyway: the test does not reach the fenced path")
			}
			e.checkExactlyOnce(ids)
			if !strings.Contains(logs.String(), "Redis has seen a newer lease term than the store") {
				t.Errorf("no warning says why the term moved:\n%s", logs.String())
			}
			if term, err := e.st.Term(ctx); err != nil || term <= 7 {
				t.Errorf("Redis's term %d (%v), want past 7", term, err)
			}
		})
	}
}
