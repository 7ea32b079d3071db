package redistopo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/pixelflow/pixelflow/internal/redisproc"
)

// Migration is what MigrateSlot did.
type Migration struct {
	Slot     int
	From, To *redisproc.Server
	// Keys is how many keys MIGRATE moved (a key gone before its turn,
	// NOKEY, is not counted).
	Keys int
	// Took is from the first SETSLOT to every node naming To the owner.
	Took time.Duration
}

// Primaries are the primaries serving slots now, as a live node's CLUSTER
// SHARDS names them.
func (c *Cluster) Primaries(ctx context.Context) ([]*redisproc.Server, error) {
	var last error
	for _, n := range c.live() {
		shards, err := clusterShards(ctx, n.Addr())
		if err != nil {
			last = err
			continue
		}
		var out []*redisproc.Server
		for _, sh := range shards {
			if len(sh.Slots) == 0 {
				continue
			}
			for _, nd := range sh.Nodes {
				if nd.Role != "master" {
					continue
				}
				p, err := c.node(hostPort(nd))
				if err != nil {
					return nil, err
				}
				out = append(out, p)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("primaries: %w", errors.Join(errors.New("no live node answered"), last))
}

// MigrateSlot moves slot from its primary to the primary to, online, as
// redis-cli --cluster reshard does: CLUSTER SETSLOT IMPORTING on to and
// MIGRATING on the owner, then every key of the slot (CLUSTER
// GETKEYSINSLOT) moved one at a time with MIGRATE, MigrateKeyGap before
// each key after the first and before the hand-over, then CLUSTER SETSLOT
// NODE on to, the owner and every other primary. While it runs, the slot's
// keys are split across the two nodes: the owner answers ASK for a key it
// no longer holds and TRYAGAIN for a command whose keys it holds only
// some of, and so does to for a client that followed an ASK. It returns
// once every live node names to the slot's primary.
func (c *Cluster) MigrateSlot(ctx context.Context, slot int, to *redisproc.Server) (Migration, error) {
	m := Migration{Slot: slot, To: to}
	from, _, err := c.slotOwners(ctx, slot)
	if err != nil {
		return m, fmt.Errorf("migrate slot %d: %w", slot, err)
	}
	m.From = from
	fail := func(err error) (Migration, error) {
		return m, fmt.Errorf("migrate slot %d from %s to %s: %w", slot, from.Addr(), to.Addr(), err)
	}
	if from == to {
		return fail(errors.New("the slot is already the target's"))
	}
	fromID, err := myID(ctx, from)
	if err != nil {
		return fail(err)
	}
	toID, err := myID(ctx, to)
	if err != nil {
		return fail(err)
	}
	host, port, err := net.SplitHostPort(to.Addr())
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	if err := setSlot(ctx, to, slot, "IMPORTING", fromID); err != nil {
		return fail(err)
	}
	if err := setSlot(ctx, from, slot, "MIGRATING", toID); err != nil {
		return fail(err)
	}
	first := true
	for {
		keys, err := do(ctx, from.Addr(), "CLUSTER", "GETKEYSINSLOT", slot, 100).StringSlice()
		if err != nil {
			return fail(fmt.Errorf("cluster getkeysinslot on %s: %w", from.Addr(), err))
		}
		if len(keys) == 0 {
			break
		}
		for _, k := range keys {
			if !first {
				if err := wait(ctx, c.MigrateKeyGap); err != nil {
					return fail(err)
				}
			}
			first = false
			r, err := do(ctx, from.Addr(), "MIGRATE", host, port, "", 0, 5000, "KEYS", k).Text()
			if err != nil {
				return fail(fmt.Errorf("migrate %q on %s: %w", k, from.Addr(), err))
			}
			if r == "OK" {
				m.Keys++
			}
		}
	}
	if err := wait(ctx, c.MigrateKeyGap); err != nil {
		return fail(err)
	}
	// The target first (it then serves the slot without ASKING), the
	// source next (it stops redirecting with ASK and answers MOVED), then
	// the others, which would learn it by gossip anyway.
	primaries, err := c.Primaries(ctx)
	if err != nil {
		return fail(err)
	}
	order := []*redisproc.Server{to, from}
	for _, p := range primaries {
		if p != to && p != from {
			order = append(order, p)
		}
	}
	for _, p := range order {
		if err := setSlot(ctx, p, slot, "NODE", toID); err != nil {
			return fail(err)
		}
	}
	if err := poll(ctx, "every node names the new owner", func(ctx context.Context) error {
		p, _, err := c.slotOwners(ctx, slot)
		if err != nil {
			return err
		}
		if p != to {
			return fmt.Errorf("the cluster names %s", p.Addr())
		}
		return nil
	}); err != nil {
		return fail(err)
	}
	m.Took = time.Since(start)
	return m, nil
}

// myID is n's cluster node id.
func myID(ctx context.Context, n *redisproc.Server) (string, error) {
	id, err := do(ctx, n.Addr(), "CLUSTER", "MYID").Text()
	if err != nil {
		return "", fmt.Errorf("cluster myid on %s: %w", n.Addr(), err)
	}
	return id, nil
}

// setSlot runs CLUSTER SETSLOT slot state id on n.
func setSlot(ctx context.Context, n *redisproc.Server, slot int, state, id string) error {
	if err := do(ctx, n.Addr(), "CLUSTER", "SETSLOT", slot, state, id).Err(); err != nil {
		return fmt.Errorf("cluster setslot %d %s on %s: %w", slot, state, n.Addr(), err)
	}
	return nil
}

// wait sleeps d, or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// Redirections are the cluster redirections the nodes answered, summed
// over the live nodes (INFO errorstats), since each started.
type Redirections struct {
	Ask, Moved, TryAgain int64
}

// Sub is r minus an earlier count.
func (r Redirections) Sub(o Redirections) Redirections {
	return Redirections{r.Ask - o.Ask, r.Moved - o.Moved, r.TryAgain - o.TryAgain}
}

func (r Redirections) String() string {
	return fmt.Sprintf("ASK %d, MOVED %d, TRYAGAIN %d", r.Ask, r.Moved, r.TryAgain)
}

// Redirections sums errorstat_ASK, errorstat_MOVED and errorstat_TRYAGAIN
// of INFO errorstats over the live nodes.
func (c *Cluster) Redirections(ctx context.Context) (Redirections, error) {
	var r Redirections
	for _, n := range c.live() {
		f, err := info(ctx, n.Addr(), "errorstats")
		if err != nil {
			return r, err
		}
		for name, into := range map[string]*int64{"ASK": &r.Ask, "MOVED": &r.Moved, "TRYAGAIN": &r.TryAgain} {
			v, ok := f["errorstat_"+name]
			if !ok {
				continue
			}
			k, err := errorCount(v)
			if err != nil {
				return r, fmt.Errorf("errorstat_%s on %s: %w", name, n.Addr(), err)
			}
			*into += k
		}
	}
	return r, nil
}

// errorCount reads "count=N" of an errorstat line.
func errorCount(v string) (int64, error) {
	for _, f := range strings.Split(v, ",") {
		if n, ok := strings.CutPrefix(f, "count="); ok {
			return strconv.ParseInt(n, 10, 64)
		}
	}
	return 0, fmt.Errorf("no count in %q", v)
}
