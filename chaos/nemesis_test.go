package chaos

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/failpoint"
	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/redisurl"
)

var localShape = cluster.Shape{API: "api", Gateways: []string{"gateway-1", "gateway-2"}, LocalRedis: true}

func TestGenerateIsSeededAndValid(t *testing.T) {
	cat := Catalogue(localShape)
	a := Generate(7, 2*time.Minute, 2, cat)
	b := Generate(7, 2*time.Minute, 2, cat)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two schedules")
	}
	if c := Generate(8, 2*time.Minute, 2, cat); reflect.DeepEqual(a.Faults, c.Faults) {
		t.Fatal("two seeds gave the same schedule")
	}
	if len(a.Faults) < 20 {
		t.Fatalf("only %d faults in 2 minutes", len(a.Faults))
	}
	if err := a.Validate(cat); err != nil {
		t.Fatalf("generated schedule invalid: %v\n%s", err, a)
	}
	overlap := false
	for i, p := range a.Faults {
		for _, q := range a.Faults[i+1:] {
			if q.At < p.End() {
				overlap = true
			}
		}
	}
	if !overlap {
		t.Error("no two faults overlap in 2 minutes at most 2 at once")
	}
	one := Generate(7, 2*time.Minute, 1, cat)
	if err := one.Validate(cat); err != nil {
		t.Fatalf("at most 1 at once: %v", err)
	}
	kinds := map[string]bool{}
	for _, s := range []uint64{1, 2, 3, 4, 5} {
		for _, p := range Generate(s, 2*time.Minute, 2, cat).Faults {
			kinds[p.Fault] = true
		}
	}
	if len(kinds) < len(cat)*3/4 {
		t.Errorf("five 2-minute schedules drew only %d of %d faults", len(kinds), len(cat))
	}
}

func TestCatalogueFollowsTheShape(t *testing.T) {
	names := func(sh cluster.Shape) []string {
		var out []string
		for _, f := range Catalogue(sh) {
			out = append(out, f.Name)
		}
		return out
	}
	local := names(localShape)
	for _, want := range []string{"kill:api", "pause:api", "relay-crash", "kill:gateway-2", "pause:redis", "redis-lose-last-append", "redis-tail-loss", "slow-disk:redis", "cut:redis-link", "slow-client", "reconnect-storm",
		"hold:api:claim-xadd", "hold:api:xadd-mark", "hold:gateway-1:group-create", "hold:gateway-2:reap"} {
		if !slices.Contains(local, want) {
			t.Errorf("local catalogue lacks %s: %v", want, local)
		}
	}
	mongo := names(cluster.Shape{API: "api", Relays: []string{"relay-1", "relay-2"}, Gateways: []string{"gateway-1"}, Mongo: true})
	for _, want := range []string{"kill:relay-2", "pause:relay-1", "cut:mongo-link", "hold:relay-1:claim-xadd", "hold:relay-2:xadd-mark", "hold:gateway-1:reap"} {
		if !slices.Contains(mongo, want) {
			t.Errorf("MongoDB catalogue lacks %s", want)
		}
	}
	if slices.Contains(mongo, "hold:api:claim-xadd") {
		t.Error("on MongoDB the api runs no relay, yet the catalogue holds its relay")
	}
	if slices.Contains(mongo, "pause:redis") || slices.Contains(mongo, "freeze:redis") || slices.Contains(mongo, "disconnect:api") {
		t.Error("a cluster of processes offers container faults")
	}
	ctr := names(cluster.Shape{API: "api", Gateways: []string{"gateway-1", "gateway-2"}, Containers: true})
	for _, want := range []string{"disconnect:api", "disconnect:gateway-2", "freeze:redis"} {
		if !slices.Contains(ctr, want) {
			t.Errorf("container catalogue lacks %s: %v", want, ctr)
		}
	}
	if procs := names(cluster.Shape{API: "api", Gateways: []string{"gateway-1", "gateway-2"}}); len(ctr) <= len(procs) || !slices.Equal(ctr[:len(procs)], procs) {
		t.Errorf("container faults must come after the rest (the generator draws by index): %v, then %v", procs, ctr)
	}
	for _, f := range Catalogue(cluster.Shape{API: "api", Gateways: []string{"gateway-1"}, Containers: true}) {
		if f.Name == "disconnect:api" && !slices.Contains(f.Bends, BendWrites) {
			t.Error("cutting the api off must be allowed to fail writes")
		}
	}
	for _, f := range Catalogue(localShape) {
		if f.Name == "kill:api" && !slices.Contains(f.Bends, BendWrites) {
			t.Error("killing the api must be allowed to fail writes")
		}
		if f.Name == "kill:redis" && len(f.Bends) != 0 {
			t.Error("a Redis fault must not bend writes: the write path does not touch Redis")
		}
		if strings.HasPrefix(f.Name, "hold:") && (len(f.Bends) != 0 || f.InjectFor == nil) {
			t.Errorf("%s: a hold bends nothing (a held relay or gateway delays deliveries, not writes) and must know its hold: bends %v", f.Name, f.Bends)
		}
	}
	// The holds come after every other fault, so withoutHolds is the
	// catalogue seeds such as teethSeed were chosen for, in its order.
	cat := Catalogue(localShape)
	base := withoutHolds(cat)
	if len(base) == len(cat) {
		t.Fatal("no hold faults in the local catalogue")
	}
	for i, f := range base {
		if cat[i].Name != f.Name {
			t.Fatalf("fault %d is %s with the holds, %s without: the holds must come last", i, cat[i].Name, f.Name)
		}
	}
}

// A hold overlaps faults of its own process (a pause that gets a gateway
// reaped, a kill inside the window), and a redis-amnesia, whose epoch
// start is what it waits for; two holds of one process do not overlap.
func TestHoldsCombineWithTheirProcess(t *testing.T) {
	cat := Catalogue(localShape)
	ok := Schedule{Duration: 20, MaxConcurrent: 2, Faults: []Planned{
		{Fault: "pause:gateway-1", At: 1, Hold: 3},
		{Fault: "hold:gateway-1:group-create", At: 2, Hold: 4},
		{Fault: "redis-amnesia", At: 4.5, Hold: 1},
		{Fault: "hold:api:claim-xadd", At: 8, Hold: 2},
		{Fault: "relay-crash", At: 9, Hold: 2},
	}}
	if err := ok.Validate(cat); err != nil {
		t.Fatalf("a hold with faults of its own process: %v", err)
	}
	two := Schedule{Duration: 10, MaxConcurrent: 2, Faults: []Planned{
		{Fault: "hold:gateway-2:reap", At: 1, Hold: 3},
		{Fault: "hold:gateway-2:group-create", At: 2, Hold: 1},
	}}
	if err := two.Validate(cat); err == nil {
		t.Fatal("two holds of one process at once were accepted")
	}
	drawn := 0
	for seed := range uint64(5) {
		for _, p := range Generate(seed, 2*time.Minute, 2, cat).Faults {
			if strings.HasPrefix(p.Fault, "hold:") {
				drawn++
			}
		}
	}
	if drawn == 0 {
		t.Error("five 2-minute schedules drew no hold")
	}
}

// A hold's rule is one the failpoint package parses, as a sleep for the
// hold; a zero hold still is one.
func TestHoldRuleParses(t *testing.T) {
	for hold, want := range map[time.Duration]time.Duration{1370 * time.Millisecond: 1370 * time.Millisecond, 0: 10 * time.Millisecond, 4*time.Second + 300*time.Microsecond: 4 * time.Second} {
		rule := holdRule("gateway:before-group-create", hold)
		rules, err := failpoint.Parse(rule)
		if err != nil {
			t.Fatalf("hold %s: rule %q: %v", hold, rule, err)
		}
		a := rules["gateway:before-group-create"]
		if a.Kind != failpoint.Sleep || a.Sleep != want || a.Nth != 0 {
			t.Errorf("hold %s: rule %q is %v, want sleep(%s) on every pass", hold, rule, a, want)
		}
	}
}

// Faults arming one process's failpoint file compose: a hold and the
// relay crash on the api both stay armed, and disarming one keeps the
// other.
func TestFailpointFilesCompose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "api.failpoints")
	p := &cluster.Process{Name: "api", FailpointFile: path}
	files := &failpointFiles{rules: map[string]map[string]string{}}
	read := func() map[string]failpoint.Action {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := failpoint.Parse(string(b))
		if err != nil {
			t.Fatalf("file %q: %v", b, err)
		}
		return rules
	}
	if err := files.set(p, "hold:api:xadd-mark", holdRule("relay:before-mark", time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := files.set(p, "relay-crash", "relay:after-xadd=crash"); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 2 || got["relay:after-xadd"].Kind != failpoint.Crash || got["relay:before-mark"].Kind != failpoint.Sleep {
		t.Fatalf("both armed: file holds %v", got)
	}
	if err := files.set(p, "relay-crash", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 1 || got["relay:before-mark"].Kind != failpoint.Sleep {
		t.Fatalf("relay-crash disarmed: file holds %v, want the hold alone", got)
	}
	if err := files.set(p, "hold:api:xadd-mark", ""); err != nil {
		t.Fatal(err)
	}
	if got := read(); len(got) != 0 {
		t.Fatalf("everything disarmed: file holds %v", got)
	}
}

func TestValidateRejects(t *testing.T) {
	cat := Catalogue(localShape)
	for name, s := range map[string]Schedule{
		"unknown fault":  {Duration: 10, Faults: []Planned{{Fault: "kill:moon", At: 1, Hold: 1}}},
		"same target":    {Duration: 10, MaxConcurrent: 2, Faults: []Planned{{Fault: "kill:api", At: 1, Hold: 3}, {Fault: "pause:api", At: 2, Hold: 1}}},
		"too many":       {Duration: 10, MaxConcurrent: 1, Faults: []Planned{{Fault: "kill:api", At: 1, Hold: 3}, {Fault: "pause:redis", At: 2, Hold: 1}}},
		"past the end":   {Duration: 10, Faults: []Planned{{Fault: "kill:api", At: 9, Hold: 3}}},
		"no duration":    {Faults: nil},
		"negative start": {Duration: 10, Faults: []Planned{{Fault: "kill:api", At: -1, Hold: 3}}},
	} {
		if err := s.Validate(cat); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestScheduleRoundTrip(t *testing.T) {
	cat := Catalogue(localShape)
	s := Generate(3, 30*time.Second, 2, cat)
	s.Failpoints = []string{"gateway:keep-stale-group=on"}
	s.Duration = 32 // two holds after the generated faults
	s.Faults = append(s.Faults, Planned{Fault: "hold:gateway-1:group-create", At: 30.1, Hold: 1.5}, Planned{Fault: "hold:api:xadd-mark", At: 30.4, Hold: 0.3})
	if err := s.Validate(cat); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	path := filepath.Join(t.TempDir(), "schedule.json")
	if err := s.Write(path); err != nil {
		t.Fatal(err)
	}
	back, err := ReadSchedule(path)
	if err != nil || !reflect.DeepEqual(s, back) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, s, back)
	}
	if err := os.WriteFile(path, []byte("{nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSchedule(path); err == nil {
		t.Fatal("a broken schedule.json was accepted")
	}
}

// TestShrinkFindsTheCulprits: a "bug" that needs relay-crash and a Redis
// tail loss inside it, each held at least 1 s, hidden in a long schedule.
func TestShrinkFindsTheCulprits(t *testing.T) {
	s := Generate(11, time.Minute, 2, Catalogue(localShape))
	s.Faults = append(s.Faults, Planned{Fault: "relay-crash", At: 20, Hold: 3}, Planned{Fault: "redis-lose-last-append", At: 21, Hold: 1.5})
	fails := func(_ context.Context, c Schedule) (bool, error) {
		var crash *Planned
		for i, p := range c.Faults {
			if p.Fault == "relay-crash" && p.Hold >= 1 {
				crash = &c.Faults[i]
			}
		}
		if crash == nil {
			return false, nil
		}
		for _, p := range c.Faults {
			if p.Fault == "redis-lose-last-append" && p.At > crash.At && p.At < crash.End() {
				return true, nil
			}
		}
		return false, nil
	}
	min, runs, err := Shrink(context.Background(), s, time.Minute, fails, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := fails(context.Background(), min); !ok {
		t.Fatalf("the shrunk schedule does not fail:\n%s", min)
	}
	if len(min.Faults) != 2 {
		t.Fatalf("shrunk to %d faults, want 2:\n%s", len(min.Faults), min)
	}
	if min.Duration >= s.Duration {
		t.Errorf("duration not trimmed: %.1fs", min.Duration)
	}
	t.Logf("%d runs: %s", runs, min)
	if !strings.Contains(min.String(), "relay-crash") {
		t.Fatal("lost the culprit")
	}
}

func TestShrinkRespectsItsBudget(t *testing.T) {
	s := Generate(11, time.Minute, 2, Catalogue(localShape))
	calls := 0
	fails := func(context.Context, Schedule) (bool, error) {
		calls++
		time.Sleep(20 * time.Millisecond)
		return true, nil
	}
	start := time.Now()
	if _, _, err := Shrink(context.Background(), s, 100*time.Millisecond, fails, t.Logf); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a 100 ms budget took %s", d)
	}
}

// The report lists a nemesis run's schedule and every fault window, and
// shades each window on the timeline.
func TestReportShowsFaultWindows(t *testing.T) {
	s := Schedule{Seed: 9, Duration: 10, MaxConcurrent: 2, Faults: []Planned{{Fault: "pause:api", At: 1, Hold: 2}, {Fault: "kill:redis", At: 2, Hold: 1}}}
	res := &Result{Scenario: "nemesis", Status: "pass", FaultStart: 3, FaultEnd: 13, Schedule: &s,
		Windows: []Window{
			{Fault: "pause:api", Planned: 4, Start: 4.01, Healed: 6, End: 6.02, Bends: []string{BendWrites}},
			{Fault: "kill:redis", Planned: 5, Start: 5.01, Healed: 6, End: 6.3, Error: "boom"},
		},
		Timeline: []Point{{T: 1, Committed: 100}, {T: 5, Committed: 100}, {T: 12, Committed: 100}},
	}
	dir := t.TempDir()
	if err := (&Report{Profile: "nemesis", When: time.Now(), Results: []*Result{res}}).Write(dir); err != nil {
		t.Fatal(err)
	}
	html, _ := os.ReadFile(filepath.Join(dir, "report.html"))
	for _, want := range []string{"Schedule: seed 9", "<td>pause:api</td><td>4.00</td><td>4.01</td>", "<td>kill:redis</td>", "<td>boom</td>", BendWrites} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	if n := strings.Count(timelineSVG(res), `fill="#f4c7c3"`); n != 2*4 {
		t.Errorf("%d shaded bands over 4 charts, want one per fault window per chart (8)", n)
	}
}

// sentinelShape is the local provider's shape on a Sentinel-replicated
// Redis (NEMESIS_REDIS=sentinel).
var sentinelShape = cluster.Shape{API: "api", Gateways: []string{"gateway-1", "gateway-2"}, Redis: redisurl.Sentinel}

// PlanShape records a replicated Redis, and leaves one node's shape as the
// teeth seeds were chosen for.
func TestPlanShapeRecordsRedis(t *testing.T) {
	for mode, want := range map[redisurl.Mode]cluster.Shape{
		"":                localShape,
		redisurl.Single:   localShape,
		redisurl.Sentinel: sentinelShape,
		redisurl.Cluster:  {API: "api", Gateways: []string{"gateway-1", "gateway-2"}, Redis: redisurl.Cluster},
	} {
		sh, err := cluster.PlanShape(cluster.Options{Provider: cluster.Local, Store: cluster.StoreEmbedded, Redis: mode})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(sh, want) {
			t.Errorf("redis %q: shape %+v, want %+v", mode, sh, want)
		}
	}
}

// On a Sentinel the one node's faults give way to the failover faults,
// last in the catalogue, on one target, bending writes and held long
// enough for a promotion; a 90 s schedule draws them.
func TestSentinelCatalogueHasTheFailovers(t *testing.T) {
	cat := Catalogue(sentinelShape)
	var names []string
	for _, f := range cat {
		names = append(names, f.Name)
	}
	for _, gone := range []string{"kill:redis", "redis-amnesia", "pause:redis", "redis-lose-last-append", "redis-tail-loss", "slow-disk:redis", "cut:redis-link", "latency:redis-link"} {
		if slices.Contains(names, gone) {
			t.Errorf("the Sentinel catalogue offers %s, a fault of the one node it does not have: %v", gone, names)
		}
	}
	failovers := []string{"failover:kill-primary", "failover:lagging", "failover:planned"}
	if n := len(names); n < 3 || !slices.Equal(names[n-3:], failovers) {
		t.Fatalf("the failover faults must come last (the generator draws by index): %v", names)
	}
	for _, f := range cat[len(cat)-3:] {
		if f.Target != "redis" || !slices.Contains(f.Bends, BendWrites) || f.MinHold < 2*time.Second || f.MaxHold < f.MinHold {
			t.Errorf("%s: target %s, bends %v, hold %s–%s; want target redis, bending writes, held at least 2 s", f.Name, f.Target, f.Bends, f.MinHold, f.MaxHold)
		}
	}
	s := Generate(1, 90*time.Second, 2, cat)
	if err := s.Validate(cat); err != nil {
		t.Fatal(err)
	}
	drawn := slices.ContainsFunc(s.Faults, func(p Planned) bool { return strings.HasPrefix(p.Fault, "failover:") })
	if !drawn {
		t.Errorf("seed 1's 90 s schedule (make chaos SCENARIO=nemesis NEMESIS_REDIS=sentinel SEED=1 DURATION=90s) draws no failover fault:\n%s", s)
	}
	t.Logf("%s", s)
}

func TestReadNemesisConfig(t *testing.T) {
	read := func(kv ...string) (nemesisConfig, error) {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return readNemesisConfig(func(k string) string { return m[k] })
	}
	c, err := read("NEMESIS_SEED", "7", "NEMESIS_DURATION", "90s", "NEMESIS_MAX_CONCURRENT", "3", "NEMESIS_SHRINK_BUDGET", "2m")
	if err != nil || c.seed != 7 || !c.seeded || c.duration != 90*time.Second || c.maxConcurrent != 3 || c.shrinkBudget != 2*time.Minute || c.redis != "" {
		t.Fatalf("%+v, %v", c, err)
	}
	if c, err := read(); err != nil || c.seeded || c.duration != 2*time.Minute || c.maxConcurrent != 2 || c.shrinkBudget != 10*time.Minute || c.redis != "" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	for v, want := range map[string]redisurl.Mode{"": "", "single": "", "sentinel": redisurl.Sentinel} {
		if c, err := read("NEMESIS_REDIS", v); err != nil || c.redis != want {
			t.Errorf("NEMESIS_REDIS=%q: redis %q, %v; want %q", v, c.redis, err, want)
		}
	}
	for _, bad := range []string{"cluster", "Sentinel", "sentinels"} {
		_, err := read("NEMESIS_REDIS", bad)
		if err == nil || !strings.Contains(err.Error(), "single") || !strings.Contains(err.Error(), "sentinel") {
			t.Errorf("NEMESIS_REDIS=%q: %v, want an error listing single and sentinel", bad, err)
		}
	}
	for _, kv := range [][2]string{{"NEMESIS_SEED", "-1"}, {"NEMESIS_DURATION", "2s"}, {"NEMESIS_MAX_CONCURRENT", "0"}, {"NEMESIS_SHRINK_BUDGET", "soon"}} {
		if _, err := read(kv[0], kv[1]); err == nil {
			t.Errorf("%s=%s accepted", kv[0], kv[1])
		}
	}
}
