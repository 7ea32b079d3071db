package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// heldKeys counts the keys the bucket documents hold for client.
func heldKeys(t *testing.T, s *Store, client string) int {
	t.Helper()
	tag := s.idemRefFor(ScopedKey(client, "x")).client
	cur, err := s.db.Collection(cIdemKeys).Find(context.Background(), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	var buckets []idemBucket
	if err := cur.All(context.Background(), &buckets); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, b := range buckets {
		for _, packed := range b.K {
			if e, ok := unpackIdem(packed); ok && e.Client == tag {
				n++
			}
		}
	}
	return n
}

// placeKeys writes n keyed placements of client, 8 at a time, publishing
// (and so pruning) the outbox as the relay would.
func placeKeys(t *testing.T, s *Store, client string, n int) {
	t.Helper()
	ctx := context.Background()
	for done := 0; done < n; {
		step := min(500, n-done)
		var wg sync.WaitGroup
		next := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if _, _, err := s.Place(ctx, canvas.Placement{GX: i % 64, GY: i / 64 % 64, Color: canvas.Color(i)}, ScopedKey(client, fmt.Sprint("k", i)), Trace{}); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := done; i < done+step; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		done += step
		publishAll(t, s)
	}
}

// A client holds at most IdempotencyKeysPerClient keys, its newest among
// them, whatever it sends; a client with a few hundred keys loses none;
// and one client's flood never drops another's key.
func TestIdempotencyKeysBoundedPerClient(t *testing.T) {
	s := openTest(t, Options{GroupCommit: 16, PruneOnPublish: true})
	ctx := context.Background()
	other := ScopedKey("192.0.2.9", "mine")
	first, _, err := s.Place(ctx, canvas.Placement{GX: 0, GY: 0, Color: 1}, other, Trace{})
	if err != nil {
		t.Fatal(err)
	}
	placeKeys(t, s, "203.0.113.5", 300)
	if n := heldKeys(t, s, "203.0.113.5"); n != 300 {
		t.Errorf("a client with 300 keys holds %d of them, want all (the bound is 1024)", n)
	}
	placeKeys(t, s, "203.0.113.6", 2500)
	n := heldKeys(t, s, "203.0.113.6")
	if n > 1024 || n < 512 {
		t.Errorf("a client that sent 2,500 keys holds %d, want at most 1024 (and not far below)", n)
	}
	t.Logf("after 2,500 keys a client holds %d", n)
	for i := 2500 - 16; i < 2500; i++ {
		ref := s.idemRefFor(ScopedKey("203.0.113.6", fmt.Sprint("k", i)))
		var b idemBucket
		if err := s.db.Collection(cIdemKeys).FindOne(ctx, map[string]any{"_id": ref.bucket}).Decode(&b); err != nil {
			t.Fatal(err)
		}
		if _, ok := b.K[ref.field]; !ok {
			t.Errorf("the client's newest key k%d was dropped", i)
		}
	}
	if ev, replayed, err := s.Place(ctx, canvas.Placement{GX: 0, GY: 0, Color: 1}, other, Trace{}); err != nil || !replayed || ev.ID != first.ID {
		t.Fatalf("another client's key after the flood: %+v replayed=%v err=%v; want its first answer", ev, replayed, err)
	}
}

// publishAll publishes (and with PruneOnPublish prunes) every pending
// event, as the relay does, in claims of up to 4,096.
func publishAll(tb testing.TB, s *Store) {
	tb.Helper()
	ctx := context.Background()
	lease, ok, err := s.AcquireLease(ctx, "publish-all", time.Minute)
	if err != nil || !ok {
		tb.Fatalf("lease: %v %v", ok, err)
	}
	pos := lease.Position
	for {
		c, evs, err := s.Claim(ctx, "publish-all", lease.Term, pos, 4096)
		if err != nil {
			tb.Fatal(err)
		}
		if len(evs) == 0 {
			return
		}
		if err := s.MarkPublished(ctx, "publish-all", lease.Term, pos, c, time.Now()); err != nil {
			tb.Fatal(err)
		}
		pos.Seq = c.Last()
	}
}

// retriesAcrossSettings is issue 28 item 2: on a file store opened with
// IdempotencyKeysPerClient first, one keyed pixel is placed for each of 16
// clients; the store is reopened with then and every key retried with its
// placement. It returns what went wrong: a retry not answered with its
// first answer (so written again), or anything the retries wrote (an
// outbox event, a pixel's version). oldGrouping restores the grouping
// that followed the setting, for TestKeyHomeScenarioHasTeeth.
func retriesAcrossSettings(t *testing.T, first, then int, oldGrouping bool) []string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "idem.lungo")
	open := func(perClient int) *Store {
		s, err := Open(ctx, "", path, Options{IdempotencyKeysPerClient: perClient})
		if err != nil {
			t.Fatal(err)
		}
		setOldGrouping(s, oldGrouping)
		return s
	}
	// One key per client: a client's second key could share a group with
	// its first and, at one key per group, evict it whatever the fix.
	const clients = 16
	key := func(i int) string { return ScopedKey(fmt.Sprintf("198.51.100.%d", i), "order-1") }
	at := func(i int) canvas.Placement { return canvas.Placement{GX: i, GY: 3, Color: canvas.Color(0x100000 + i)} }
	s := open(first)
	answers := make([]canvas.Event, clients)
	for i := range clients {
		ev, _, err := s.Place(ctx, at(i), key(i), Trace{})
		if err != nil {
			t.Fatal(err)
		}
		answers[i] = ev
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	s = open(then)
	defer s.Close(ctx)
	var problems []string
	for i := range clients {
		ev, replayed, err := s.Place(ctx, at(i), key(i), Trace{})
		if err != nil || !replayed || ev.ID != answers[i].ID || ev.Version != answers[i].Version {
			problems = append(problems, fmt.Sprintf("client %d's retry: %s v%d replayed=%v err=%v, want its first answer %s v%d", i, ev.ID, ev.Version, replayed, err, answers[i].ID, answers[i].Version))
		}
	}
	if n, _, err := s.Backlog(ctx); err != nil || n != clients {
		problems = append(problems, fmt.Sprintf("%d outbox events after the retries (err %v), want the %d first writes only", n, err, clients))
	}
	_, px, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range px {
		if p.Version != 1 {
			problems = append(problems, fmt.Sprintf("pixel (%d,%d) at version %d after the retries, want 1", p.GX, p.GY, p.Version))
		}
	}
	return problems
}

// TestKeyHomeIgnoresKeysSetting: a retried key finds its first answer and
// writes nothing after a restart with another IDEMPOTENCY_KEYS, above or
// below 64 (two api processes on MongoDB configured differently are the
// same case): a key's bucket depends only on its client and itself.
func TestKeyHomeIgnoresKeysSetting(t *testing.T) {
	for _, c := range [][2]int{{8, 64}, {64, 8}, {1, 1024}, {1024, 3}} {
		t.Run(fmt.Sprintf("%d-then-%d", c[0], c[1]), func(t *testing.T) {
			for _, p := range retriesAcrossSettings(t, c[0], c[1], false) {
				t.Error(p)
			}
		})
	}
}

// TestKeyHomeScenarioHasTeeth: with the old grouping (as many groups as
// the setting below 64) the same scenario writes retried keys again.
func TestKeyHomeScenarioHasTeeth(t *testing.T) {
	problems := retriesAcrossSettings(t, 8, 64, true)
	if len(problems) == 0 {
		t.Fatal("with the old grouping the scenario found nothing: it cannot catch the defect")
	}
	t.Logf("old grouping: %d problems, first: %s", len(problems), problems[0])
}

// setOldGrouping switches s to the grouping that followed the setting.
func setOldGrouping(s *Store, on bool) { s.idemGroupsBySetting = on }
