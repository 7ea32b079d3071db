package redisaof_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redisaof"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
)

// TestCutAOF writes what the relay and a gateway write (scripts of several
// XADDs, single XADDs, consumer-group commands), cuts the newest XADDs the
// way an fsync window loses them and checks what Redis loads afterwards.
func TestCutAOF(t *testing.T) {
	ctx := context.Background()
	s := redistest.MustStart(t, true)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	two := `redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, ARGV[1], 'f', 'v'); redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, ARGV[2], 'f', 'v'); return 2`
	for i := 0; i < 3; i++ {
		if err := rdb.Eval(ctx, two, []string{"s"}, fmt.Sprintf("%d-0", 2*i+1), fmt.Sprintf("%d-0", 2*i+2)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "7-0", Values: []any{"f", "v"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XGroupCreate(ctx, "s", "g", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"s", ">"}, Count: 100}).Err(); err != nil {
		t.Fatal(err)
	}
	isXAdd := func(args []string) bool { return strings.EqualFold(args[0], "XADD") }

	if _, err := redisaof.CutTail(s, 1, isXAdd); err == nil {
		t.Fatal("CutTail on a running server must fail")
	}
	s.Kill()
	cut, err := redisaof.CutTail(s, 1, isXAdd)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(cut)
	// The single XADD and everything after it (the group's creation and
	// its read) are gone; the scripts' blocks stay whole.
	if cut.Matched != 1 || cut.Commands["XGROUP"] != 1 || cut.Kept >= cut.Size {
		t.Fatalf("unexpected cut: %v", cut)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 6 {
		t.Fatalf("XLEN after cutting one XADD = %d, want 6", n)
	}
	if groups, err := rdb.XInfoGroups(ctx, "s").Result(); err != nil || len(groups) != 0 {
		t.Fatal("the consumer group created after the cut point survived")
	}

	// Three entries: two whole blocks of two go (a block is never split).
	s.Kill()
	cut, err = redisaof.CutTail(s, 3, isXAdd)
	if err != nil {
		t.Fatal(err)
	}
	if cut.Matched != 4 || cut.Commands["MULTI"] != 2 || cut.Commands["EXEC"] != 2 {
		t.Fatalf("unexpected cut: %v", cut)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 2 {
		t.Fatalf("XLEN after cutting two blocks = %d, want 2", n)
	}

	s.Kill()
	if _, err := redisaof.CutTail(s, 5, isXAdd); err == nil || !strings.Contains(err.Error(), "fewer than 5") {
		t.Fatalf("cutting more than the file holds: %v, want a refusal", err)
	}
	if err := s.Restart(ctx, false); err != nil {
		t.Fatal(err)
	}
	if n := rdb.XLen(ctx, "s").Val(); n != 2 {
		t.Fatalf("a refused cut changed the data: XLEN %d, want 2", n)
	}
}
