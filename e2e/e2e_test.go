package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/apitest"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/harness/history"
	"github.com/pixelflow/pixelflow/internal/protocol"
)

// suite holds what TestMain decided once for every test of the package.
type suite struct {
	bin      string
	provider string
}

// env is set by TestMain; tests read it through setup, nothing else.
var env suite

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pixelflow-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if env.bin, env.provider, err = cluster.Prepare(ctx, dir, "failpoints"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}

// setup starts a cluster for one test.
func setup(t *testing.T, opts cluster.Options) (context.Context, *cluster.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	opts.Provider, opts.Bin = env.provider, env.bin
	return ctx, cluster.Start(ctx, t, opts)
}

// check fails the test on any problem of the report and keeps the JSON
// report with the test's artifacts.
func check(t *testing.T, rep *history.Report) {
	t.Helper()
	path := filepath.Join(t.ArtifactDir(), "history.json")
	if err := rep.WriteJSON(path); err != nil {
		t.Error(err)
	}
	for _, p := range rep.Problems() {
		t.Error(p)
	}
}

// TestHappyPath: 3 writers, 50 clients over 2 gateways, 3,000 writes; every
// client gets every acknowledged write and ends equal to the store.
func TestHappyPath(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2})
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 50)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	writer := cluster.NewWriter(c.APIURL(), rec, 64)
	if acked := writer.Run(ctx, 3, 3000); acked != 3000 {
		t.Errorf("acknowledged %d of 3000 writes with nothing failing", acked)
	}
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)
	if _, _, _, dup := rep.Totals(); dup != 0 {
		t.Logf("duplicates without any fault: %d (allowed, but worth a look)", dup)
	}
}

// TestReconnect: clients drop their connections mid-stream (no close
// handshake, like a network failure) and resume with ?since=; nothing is
// lost and the resumes really happened.
func TestReconnect(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2})
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 20)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	writeCtx, stopDrops := context.WithCancel(ctx)
	dropped := make(chan int)
	go func() {
		n := 0
		defer func() { dropped <- n }()
		rng := rand.New(rand.NewPCG(1, 2))
		for {
			select {
			case <-writeCtx.Done():
				return
			case <-time.After(50 * time.Millisecond):
				w.Clients[rng.IntN(len(w.Clients))].Drop()
				n++
			}
		}
	}()
	cluster.NewWriter(c.APIURL(), rec, 32).Run(ctx, 3, 2000)
	stopDrops()
	drops := <-dropped
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)
	var resumes int64
	for _, cl := range w.Clients {
		resumes += cl.Stats().Resumes
	}
	t.Logf("%d drops, %d resumes", drops, resumes)
	if drops == 0 || resumes == 0 {
		t.Errorf("the suite proves nothing: %d drops, %d resumes", drops, resumes)
	}
}

// TestRestartAPI: the api (with the relay, on the embedded store) is
// stopped and started again mid-traffic; writes during the outage fail or
// stay unknown, acknowledged ones survive, and clients converge.
func TestRestartAPI(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 2, Durable: true})
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 10)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	writer := cluster.NewWriter(c.APIURL(), rec, 32)
	writer.Retries = 0 // an outage shows as unknown outcomes, not as waiting
	writeCtx, stopWriting := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { writer.Run(writeCtx, 2, 1_000_000); close(done) }()
	waitAcked(t, writer, 300)
	if err := c.API.Stop(15 * time.Second); err != nil {
		t.Error(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := c.API.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitAcked(t, writer, writer.Acked()+300)
	stopWriting()
	<-done
	acked := writer.Acked()
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)
	t.Logf("acknowledged %d, outcomes %+v", acked, rep.Writes)
	if rep.Writes.Unknown == 0 {
		t.Errorf("no write saw the outage: the restart was not mid-traffic")
	}
}

// waitAcked waits until the writer has n acknowledged writes.
func waitAcked(t *testing.T, w *cluster.Writer, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for w.Acked() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d writes acknowledged within a minute", w.Acked(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBadInputAndIdempotency: malformed writes to the api and through a
// gateway get 4xx JSON errors and change nothing; a retried write with the
// same Idempotency-Key answers the first result and writes one event.
func TestBadInputAndIdempotency(t *testing.T) {
	ctx, c := setup(t, cluster.Options{Gateways: 1})
	rec := history.NewRecorder(rand.Uint32())
	w, err := cluster.Watch(ctx, rec, c.Target(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	before, err := cluster.Snapshot(ctx, c.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	for name, base := range map[string]string{"api": c.APIURL(), "gateway": c.GatewayURLs()[0]} {
		t.Run(name, func(t *testing.T) { apitest.CheckBadRequests(t, base, before.Width, before.Height) })
	}
	if after, err := cluster.Snapshot(ctx, c.APIURL()); err != nil || !reflect.DeepEqual(after, before) {
		t.Fatalf("bad requests changed the canvas (%v): before %+v after %+v", err, before, after)
	}

	writer := cluster.NewWriter(c.APIURL(), rec, 8)
	col := rec.NextColor()
	body := fmt.Sprintf(`{"gx":3,"gy":4,"color":%q}`, col)
	var first, second protocol.Event
	for _, out := range []*protocol.Event{&first, &second} {
		status, err := writer.Post(ctx, body, "same-key", out)
		if err != nil || status != http.StatusCreated {
			t.Fatalf("POST with Idempotency-Key: %d %v", status, err)
		}
	}
	if first != second || first.ID == "" {
		t.Fatalf("a retried write answered differently: %+v then %+v", first, second)
	}
	rec.Write(history.Write{GX: 3, GY: 4, Color: col, Outcome: history.OK, EventID: first.ID, Version: first.Version})
	if status, _ := writer.Post(ctx, `{"gx":3,"gy":4,"color":"#010203"}`, "same-key", &second); status != http.StatusConflict {
		t.Errorf("same key, other pixel: %d, want 409", status)
	}
	rep := cluster.Verify(ctx, t.Name(), c.Target(), rec, w, 30*time.Second, t.Logf)
	check(t, rep)
	for _, cl := range w.Clients {
		n := 0
		for _, r := range cl.History() {
			// Matched by its colour, unique to this write: events carry no
			// id unless a client asks for it.
			if r.Event.Kind == canvas.KindPixel && r.Event.Color == col {
				n++
			}
		}
		if n != 1 {
			t.Errorf("the idempotent write reached a client %d times, want once", n)
		}
	}
}
