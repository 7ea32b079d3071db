package stream_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/canvas"
	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// keysOnly is a go-redis hook that runs every script as an ACL user that
// may touch exactly the keys the call declares in KEYS: a script reaching
// any other key (same slot or not) is refused by Redis itself. It
// records which scripts ran.
type keysOnly struct {
	admin *redis.Client
	user  string
	mu    sync.Mutex
	ran   map[string][]string // script sha1 → the KEYS of its last run
}

func (h *keysOnly) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *keysOnly) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *keysOnly) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		name := strings.ToLower(cmd.Name())
		rules := []any{"ACL", "SETUSER", h.user, "resetkeys"}
		if name == "eval" || name == "evalsha" {
			sha := fmt.Sprint(args[1])
			if name == "eval" { // Redis names the body (SHA-1)
				var err error
				if sha, err = h.admin.ScriptLoad(ctx, sha).Result(); err != nil {
					return fmt.Errorf("keysOnly: %w", err)
				}
			}
			n, err := strconv.Atoi(fmt.Sprint(args[2]))
			if err != nil {
				return fmt.Errorf("keysOnly: numkeys %v: %w", args[2], err)
			}
			var keys []string
			for _, k := range args[3 : 3+n] {
				keys = append(keys, fmt.Sprint(k))
				rules = append(rules, "~"+globEscape(fmt.Sprint(k)))
			}
			h.mu.Lock()
			h.ran[sha] = keys
			h.mu.Unlock()
		} else {
			rules = append(rules, "allkeys") // only scripts are on trial
		}
		if err := h.admin.Do(ctx, rules...).Err(); err != nil {
			return fmt.Errorf("keysOnly: %w", err)
		}
		return next(ctx, cmd)
	}
}

// denied reports whether err is Redis refusing a key to the script's user.
func denied(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "NOPERM") || strings.Contains(err.Error(), "can't access"))
}

// globEscape quotes the ACL key pattern's glob characters.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// TestScriptsTouchOnlyTheirKeys runs every script of the package through
// the public API as a user allowed only the keys each call passes in
// KEYS. A script that reads or writes a key it was not given (which a
// Redis Cluster cannot route, and which breaks the one-slot layout) fails
// here; so does a script file the test does not drive.
func TestScriptsTouchOnlyTheirKeys(t *testing.T) {
	srv := redistest.MustStart(t, false)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer admin.Close()
	const user = "scripts"
	if err := admin.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "+@all", "allkeys").Err(); err != nil {
		t.Fatal(err)
	}
	hook := &keysOnly{admin: admin, user: user, ran: map[string][]string{}}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: user, Password: "pw"})
	defer rdb.Close()
	rdb.AddHook(hook)

	// The checker has teeth: a script that builds a key of its own is refused.
	bad := redis.NewScript(`return redis.call('GET', KEYS[1] .. 'x')`)
	if err := bad.Run(ctx, rdb, []string{stream.KeysFor("c").Epoch}).Err(); !denied(err) {
		t.Fatalf("a script reaching an undeclared key: %v, want an ACL refusal", err)
	}

	st := stream.New(rdb, "c", 100)
	for _, step := range []struct {
		what string
		run  func() error
	}{
		{"start epoch", func() error { return st.StartEpoch(ctx, 1, "e1") }},
		{"claim term", func() error { return st.ClaimTerm(ctx, 2) }},
		{"publish", func() error { return st.Publish(ctx, 2, "e1", 0, []stream.Entry{entry(1, "e1"), entry(2, "e1")}) }},
		{"heartbeat", func() error { _, err := st.Heartbeat(ctx, "gw"); return err }},
		{"clock", func() error { _, err := st.Clock(ctx); return err }},
		{"join group", func() error {
			_, err := st.JoinGroup(ctx, "gw:gw", canvas.Position{Epoch: "e1", Seq: 1}, true)
			return err
		}},
		{"reap", func() error { _, _, err := st.Reap(ctx, "gone", "gw:gone", time.Second); return err }},
		// A refusal runs the script to its error reply, past no ACL check.
		{"fenced publish", func() error {
			if err := st.Publish(ctx, 1, "e1", 2, []stream.Entry{entry(3, "e1")}); !errors.Is(err, stream.ErrFenced) {
				return fmt.Errorf("%w, want ErrFenced", err)
			}
			return nil
		}},
	} {
		if err := step.run(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}

	files, err := os.ReadDir("lua")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range files {
		if f.Name() != "fence.lua" { // the relay scripts' shared prelude
			want = append(want, f.Name())
		}
	}
	var have []string
	for name, sc := range stream.Scripts {
		have = append(have, name)
		keys, ok := hook.ran[sc.Hash()]
		if !ok {
			t.Errorf("script %s never ran: drive it here", name)
			continue
		}
		t.Logf("%s ran with KEYS %v", name, keys)
	}
	slices.Sort(have)
	if !slices.Equal(have, want) {
		t.Errorf("scripts under test %v, lua files %v: every file must be in stream.Scripts", have, want)
	}
}
