package stream_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestJoinGroup: where JoinGroup starts a group, and what it does with one
// that exists, for each position a reader can hold.
func TestJoinGroup(t *testing.T) {
	srv := redistest.MustStart(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	s := stream.New(rdb, "j", 100)
	if err := s.StartEpoch(ctx, 1, "e1"); err != nil {
		t.Fatal(err)
	}
	lastDelivered := func(group string) string {
		t.Helper()
		groups, err := rdb.XInfoGroups(ctx, s.Keys().Stream).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range groups {
			if g.Name == group {
				return g.LastDeliveredID
			}
		}
		t.Fatalf("group %s not on the stream", group)
		return ""
	}
	for _, c := range []struct {
		name     string
		existing string // the group's last-delivered id before the join ("": none)
		at       canvas.Position
		held     bool
		outcome  string
		want     string
	}{
		{"first join", "", canvas.Position{}, false, stream.JoinCreated, "0-0"},
		{"restarted instance keeps its group", "7-0", canvas.Position{}, false, stream.JoinKept, "7-0"},
		{"reaped within the epoch: after the hub", "", canvas.Position{Epoch: "e1", Seq: 30}, true, stream.JoinCreated, "30-0"},
		{"its own group within the epoch is kept", "12-0", canvas.Position{Epoch: "e1", Seq: 30}, true, stream.JoinKept, "12-0"},
		{"another epoch: at the start", "", canvas.Position{Epoch: "e0", Seq: 30}, true, stream.JoinCreated, "0-0"},
		{"another epoch: a leftover group is reset", "30-0", canvas.Position{Epoch: "e0", Seq: 30}, true, stream.JoinReset, "0-0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			group := stream.GroupName("x")
			_ = rdb.XGroupDestroy(ctx, s.Keys().Stream, group).Err()
			if c.existing != "" {
				if err := rdb.XGroupCreateMkStream(ctx, s.Keys().Stream, group, c.existing).Err(); err != nil {
					t.Fatal(err)
				}
			}
			j, err := s.JoinGroup(ctx, group, c.at, c.held)
			if err != nil {
				t.Fatal(err)
			}
			if j.Epoch != "e1" || j.Outcome != c.outcome {
				t.Errorf("joined %+v, want epoch e1, %s", j, c.outcome)
			}
			if got := lastDelivered(group); got != c.want {
				t.Errorf("last-delivered id %s, want %s", got, c.want)
			}
		})
	}
	// No epoch yet (Redis restarted empty, no relay has started one): the
	// group is made with its stream, at the start, even for a position.
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	j, err := s.JoinGroup(ctx, stream.GroupName("x"), canvas.Position{Epoch: "e1", Seq: 30}, true)
	if err != nil || j != (stream.Joined{Epoch: "", Outcome: stream.JoinCreated}) {
		t.Fatalf("join without an epoch: %+v, %v", j, err)
	}
	if got := lastDelivered(stream.GroupName("x")); got != "0-0" {
		t.Errorf("last-delivered id %s, want 0-0", got)
	}
}
