package stream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/promtest"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestFiguresBoard: each gateway's dashboard figures are kept under its
// instance id in the canvas's ops key, the newest replacing the older, and
// another canvas does not see them.
func TestFiguresBoard(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	st := stream.New(rdb, "c", 1000)
	if all, err := st.Figures(ctx); err != nil || len(all) != 0 {
		t.Fatalf("empty board: %v %v", all, err)
	}
	for _, put := range []struct{ id, figures string }{{"gw-a", `{"n":1}`}, {"gw-b", `{"n":2}`}, {"gw-a", `{"n":3}`}} {
		if err := st.PutFigures(ctx, put.id, []byte(put.figures)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := st.Figures(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["gw-a"] != `{"n":3}` || all["gw-b"] != `{"n":2}` {
		t.Errorf("board %v, want gw-a's newest and gw-b's", all)
	}
	if raw, err := rdb.HGetAll(ctx, st.Keys().Ops).Result(); err != nil || len(raw) != 2 {
		t.Errorf("the figures are not in Keys().Ops: %v %v", raw, err)
	}
	if other, err := stream.New(rdb, "d", 1000).Figures(ctx); err != nil || len(other) != 0 {
		t.Errorf("another canvas sees the figures: %v %v", other, err)
	}
}

// TestCollectorCountsTheStream: pixelflow_stream_length follows the
// stream, and is -1 once Redis is gone (the scrape answers: its read has
// a timeout).
func TestCollectorCountsTheStream(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer rdb.Close()
	ctx := context.Background()
	st := stream.New(rdb, "c", 1000)
	if kinds := promtest.Kinds(t, st.Collector()); len(kinds) != 1 || kinds["pixelflow_stream_length"] != "GAUGE" {
		t.Fatalf("series %v, want the one gauge pixelflow_stream_length", kinds)
	}
	if v := promtest.Values(t, st.Collector()); v["pixelflow_stream_length"] != 0 {
		t.Errorf("no stream yet: length %v, want 0", v["pixelflow_stream_length"])
	}
	if err := st.StartEpoch(ctx, 1, "e1"); err != nil {
		t.Fatal(err)
	}
	if err := st.Publish(ctx, 1, "e1", 0, []stream.Entry{entry(1, "e1"), entry(2, "e1"), entry(3, "e1")}); err != nil {
		t.Fatal(err)
	}
	if v := promtest.Values(t, st.Collector()); v["pixelflow_stream_length"] != 3 {
		t.Errorf("three entries: length %v", v["pixelflow_stream_length"])
	}
	srv.Kill()
	if v, ok := promtest.Values(t, st.Collector())["pixelflow_stream_length"]; ok {
		t.Errorf("Redis gone: length %v, want the series absent (unknown)", v)
	}
}
