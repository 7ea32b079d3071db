package relay_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/relay"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestNumberedEntriesKeepTheirNumbers: what the relay hands to Numbered
// before its XADD (a gateway in the same process broadcasts it at once) is
// what the stream ends up holding at those numbers, even when the relay
// dies between the two and a successor finishes its claim.
func TestNumberedEntriesKeepTheirNumbers(t *testing.T) {
	if msg := numberedScenario(t, false); msg != "" {
		t.Fatal(msg)
	}
}

// TestNumberedEntriesKeepTheirNumbersHasTeeth: a successor that ignores
// the open claim (the old defect, failpoint relay:forget-claim) numbers
// another event where the dead relay had offered X, and the scenario
// catches it.
func TestNumberedEntriesKeepTheirNumbersHasTeeth(t *testing.T) {
	if msg := numberedScenario(t, true); msg == "" {
		t.Fatal("a successor that forgot the open claim went unnoticed")
	}
}

// numberedScenario: relay a numbers X and hands it over, then dies before
// X's XADD; Y is written; relay b takes over and drains. It returns how the
// stream contradicts what a offered, or "".
func numberedScenario(t *testing.T, forgetClaim bool) string {
	e := newEnv(t, false)
	var mu sync.Mutex
	offered := map[uint64]stream.Entry{}
	arm := false
	var once sync.Once
	numbered := func(entries []stream.Entry) {
		mu.Lock()
		defer mu.Unlock()
		for _, en := range entries {
			offered[en.Seq] = en
		}
	}
	crash := func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		var err error
		if name == "relay:before-xadd" && arm {
			once.Do(func() { err = errors.New("crash before XADD") })
		}
		return err
	}
	_, _, doneA := e.startRelay("a", relay.Options{Numbered: numbered, Failpoint: crash})
	x0 := e.place(0, 0, 1)
	e.waitDrained(5 * time.Second)
	mu.Lock()
	arm = true
	mu.Unlock()
	x := e.place(0, 0, 2) // version 2 of (0,0)
	if err := <-doneA; !errors.Is(err, relay.ErrFailpoint) {
		t.Fatalf("relay a: %v, want the failpoint", err)
	}
	mu.Lock()
	got := offered[2]
	mu.Unlock()
	if got.ID != x {
		t.Fatalf("a offered %+v at 2, want X=%s", got, x)
	}
	if n := len(e.streamEntries()); n != 1 {
		t.Fatalf("stream has %d entries, want 1: a died before X's XADD", n)
	}
	y := e.place(1, 1, 3) // version 1 of (1,1): claimed before X by version
	var fp func(string) error
	if forgetClaim {
		fp = func(name string) error {
			if name == "relay:forget-claim" {
				return errors.New("fix off")
			}
			return nil
		}
	}
	e.startRelay("b", relay.Options{Failpoint: fp})
	e.waitDrained(5 * time.Second)
	for _, en := range e.streamEntries() {
		if o, ok := offered[en.Seq]; ok && o.Epoch == en.Epoch && o.ID != en.ID {
			return fmt.Sprintf("seq %d was offered as %s before its XADD, and the stream holds %s there: a client of the gateway beside the relay saw another event at that number", en.Seq, o.ID, en.ID)
		}
	}
	e.checkExactlyOnce([]string{x0, x, y})
	return ""
}
