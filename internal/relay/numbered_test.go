package relay_test

import (
	"fmt"
	"sync"
	"testing"

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
	numbered := func(entries []stream.Entry) {
		mu.Lock()
		defer mu.Unlock()
		for _, en := range entries {
			offered[en.Seq] = en
		}
	}
	x0, x := e.crashHandlingX("relay:before-xadd", relay.Options{Numbered: numbered})
	mu.Lock()
	got := offered[2]
	mu.Unlock()
	if got.ID != x {
		t.Fatalf("a offered %+v at 2, want X=%s", got, x)
	}
	if n := len(e.streamEntries()); n != 1 {
		t.Fatalf("stream has %d entries, want 1: a died before X's XADD", n)
	}
	y := e.takeOver(forgetClaim)
	for _, en := range e.streamEntries() {
		if o, ok := offered[en.Seq]; ok && o.Epoch == en.Epoch && o.ID != en.ID {
			return fmt.Sprintf("seq %d was offered as %s before its XADD, and the stream holds %s there: a client of the gateway beside the relay saw another event at that number", en.Seq, o.ID, en.ID)
		}
	}
	e.checkExactlyOnce([]string{x0, x, y})
	return ""
}
