package chaos

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// rejoinHold is how long gateway-rejoin-new-epoch holds the gateway at
// gateway:before-group-create: long enough for Redis to restart empty and
// the relay to start a new epoch (about a second here), short enough that
// the new epoch still holds fewer entries than the gateway's old position
// when the hold ends.
const rejoinHold = 3 * time.Second

// GatewayRejoinNewEpoch is the interleaving of issue 28 items 1 and 4: a
// gateway paused past GROUP_TTL loses its group to the other's reaper,
// resumes, and is held (failpoint gateway:before-group-create) as it
// rejoins its epoch at its old position; inside the hold Redis comes back
// empty and the relay starts a new epoch. The gateway must join the new
// epoch at its start: a group created at the old position on the new
// stream skips the new epoch's first entries, and its clients, told to
// resync at that position, never receive the pixels painted meanwhile.
//
// extra are more failpoints, armed in every pixelflow process from the
// start: the teeth test switches the fix off with
// gateway:keep-stale-group=on.
func GatewayRejoinNewEpoch(extra ...string) Scenario {
	sc := Scenario{
		Name: "gateway-rejoin-new-epoch",
		Doc: fmt.Sprintf("SIGSTOP one of two gateways past GROUP_TTL (%s) so the other reaps its group, SIGCONT it and hold it for %s (failpoint gateway:before-group-create=sleep) as it rejoins its epoch at its old position; "+
			"inside the hold Redis restarts empty and the relay starts a new epoch (RETENTION 1s: the new epoch starts with few entries). "+
			"The gateway must join the new epoch at its start, not at its old position: nothing lost, clients converge.", groupTTL, rejoinHold),
		// A short retention keeps the republished epoch short, so the
		// gateway's old position lies ahead of the new epoch's tail when it
		// joins: the entries a stale group would skip are fresh pixels.
		Cluster:  cluster.Options{Env: []string{"GROUP_TTL=" + groupTTL.String(), "RETENTION=1s"}},
		Converge: 20 * time.Second,
		Inject:   rejoinNewEpoch,
		Check: func(d *Drill, r *Result) []Invariant {
			f := d.Facts
			return []Invariant{
				{"the paused gateway's group was reaped", f["reaped"] >= 1, fmt.Sprintf("%.0f groups reaped by %s", f["reaped"], d.Cluster.Gateways[1].Name)},
				{"the gateway was held rejoining at its old position", f["held"] == 1 && f["oldSeq"] > 0,
					fmt.Sprintf("failpoint fired %.2fs after SIGCONT; its clients at seq %.0f of the old epoch", f["heldAfter"], f["oldSeq"])},
				{"a new epoch started inside the hold", f["epochInHold"] == 1,
					fmt.Sprintf("new epoch %.2fs into the hold, before the gateway had a group on its stream: %v", f["epochAfter"], f["epochInHold"] == 1)},
				{"the new epoch was behind the old position when the gateway joined", f["joined"] == 1 && f["tailAtJoin"] < f["oldSeq"],
					fmt.Sprintf("joined %.2fs into the hold; new epoch's tail %.0f vs old position %.0f; the group's last-delivered seq %.0f", f["joinAfter"], f["tailAtJoin"], f["oldSeq"], f["groupAtJoin"])},
			}
		},
	}
	if len(extra) > 0 {
		sc.Cluster.Env = append(sc.Cluster.Env, "PIXELFLOW_FAILPOINTS="+strings.Join(extra, ";"))
	}
	return sc
}

func rejoinNewEpoch(ctx context.Context, d *Drill) (func(context.Context) error, error) {
	c := d.Cluster
	g, other := c.Gateways[0], c.Gateways[1]
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(c.RedisURL, "redis://")})
	defer rdb.Close()
	st := stream.New(rdb, canvasName, 0)
	group := stream.GroupName(g.Name) // the cluster's gateways' INSTANCE_ID is their name
	old, err := st.Tail(ctx)
	if err != nil {
		return nil, err
	}
	before, err := reaped(ctx, other.URL())
	if err != nil {
		return nil, err
	}
	resume, err := pause(d, g)
	if err != nil {
		return nil, err
	}
	if err := until(ctx, groupTTL+10*time.Second, func() bool {
		n, err := reaped(ctx, other.URL())
		d.Facts["reaped"] = float64(n - before)
		return err == nil && n > before
	}); err != nil {
		_ = resume(ctx)
		return nil, fmt.Errorf("%s's group not reaped by %s: %w", g.Name, other.Name, err)
	}
	// Its clients hold what its hub broadcast: the position it rejoins at.
	for i, cl := range d.Watchers.Clients {
		if p := cl.Position(); i%len(c.Gateways) == 0 && p.Epoch == old.Epoch {
			d.Facts["oldSeq"] = max(d.Facts["oldSeq"], float64(p.Seq))
		}
	}
	// Stopped, it reads the failpoint file at its next hit: the rejoin
	// after SIGCONT (only the first, @1).
	from := logSize(g.Log)
	if err := g.Arm(fmt.Sprintf("gateway:before-group-create=sleep(%s)@1", rejoinHold)); err != nil {
		_ = resume(ctx)
		return nil, err
	}
	resumed := time.Now()
	if err := resume(ctx); err != nil {
		return nil, err
	}
	d.Logf("gateway-rejoin-new-epoch: %s resumed; its clients at %s:%.0f", g.Name, old.Epoch, d.Facts["oldSeq"])
	if err := until(ctx, 10*time.Second, func() bool { return logHas(g.Log, from, "gateway:before-group-create fires") }); err != nil {
		return nil, fmt.Errorf("%s never reached gateway:before-group-create: %w", g.Name, err)
	}
	heldAt := time.Now()
	d.Facts["held"], d.Facts["heldAfter"] = 1, heldAt.Sub(resumed).Seconds()
	// Inside the hold: Redis comes back empty; the relay starts an epoch.
	if err := c.KillRedis(ctx); err != nil {
		return nil, err
	}
	if err := c.RestartRedis(ctx, true); err != nil {
		return nil, err
	}
	var epoch string // the new one
	if err := until(ctx, rejoinHold, func() bool {
		tail, err := st.Tail(ctx)
		epoch = tail.Epoch
		return err == nil && tail.Epoch != "" && tail.Epoch != old.Epoch
	}); err == nil {
		d.Facts["epochAfter"] = time.Since(heldAt).Seconds()
		if _, ok := groupOn(ctx, rdb, group); !ok {
			d.Facts["epochInHold"] = 1
		}
	}
	d.Logf("gateway-rejoin-new-epoch: Redis restarted empty; epoch %s → %s %.2fs into the hold", old.Epoch, epoch, d.Facts["epochAfter"])
	if err := until(ctx, rejoinHold+10*time.Second, func() bool {
		last, ok := groupOn(ctx, rdb, group)
		if ok {
			tail, err := st.Tail(ctx)
			if err != nil || tail.Epoch != epoch {
				return false
			}
			d.Facts["groupAtJoin"], d.Facts["tailAtJoin"] = float64(last), float64(tail.Seq)
		}
		return ok
	}); err == nil {
		d.Facts["joined"], d.Facts["joinAfter"] = 1, time.Since(heldAt).Seconds()
	}
	d.Logf("gateway-rejoin-new-epoch: %s joined %.2fs into the hold: new epoch's tail %.0f, its group at %.0f (old position %.0f)",
		g.Name, d.Facts["joinAfter"], d.Facts["tailAtJoin"], d.Facts["groupAtJoin"], d.Facts["oldSeq"])
	if err := g.Arm(""); err != nil {
		return nil, err
	}
	return func(context.Context) error { return nil }, nil
}

// groupOn reports whether group is on the canvas's stream, and its
// last-delivered sequence number.
func groupOn(ctx context.Context, rdb *redis.Client, group string) (uint64, bool) {
	groups, err := rdb.XInfoGroups(ctx, stream.KeysFor(canvasName).Stream).Result()
	if err != nil {
		return 0, false
	}
	for _, gr := range groups {
		if gr.Name == group {
			seq, _ := stream.ParseID(gr.LastDeliveredID)
			return seq, true
		}
	}
	return 0, false
}

// until polls cond every 10 ms until it holds or bound passes.
func until(ctx context.Context, bound time.Duration, cond func() bool) error {
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", bound)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// logSize is the length of a process's log, where a wait for a line
// written from now on starts.
func logSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logHas reports whether the log holds s after offset from.
func logHas(path string, from int64, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return false
	}
	b, err := io.ReadAll(f)
	return err == nil && strings.Contains(string(b), s)
}
