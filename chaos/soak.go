package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// The soak (make soak DURATION=30m) is the nemesis run long, with a
// resource sampler beside it: RSS, goroutines and open files of every
// pixelflow process, redis-server's RSS, Redis's used memory and the
// stream's length, the store's size on disk. Growth is judged by comparing
// the last third of each series with its first third.

// Growth bounds: the last third's median may exceed the first third's by
// the factor and the slack (the slack absorbs warm-up: caches, pools,
// buffers filling once).
type growthBound struct {
	factor float64
	slack  float64
	unit   string
}

var growthBounds = map[string]growthBound{
	"rss":          {1.5, 32 << 20, "bytes"},
	"goroutines":   {1.5, 64, ""},
	"fds":          {1.5, 32, ""},
	"redis-memory": {1.5, 16 << 20, "bytes"},
	"stream-len":   {1.5, 500, "entries"},
	"store-bytes":  {1.5, 8 << 20, "bytes"},
}

// soakEnv bounds the stream so its length plateaus within seconds.
var soakEnv = []string{"STREAM_MAXLEN=2000"}

// resources collects the series, one per (what, metric).
type resources struct {
	mu     sync.Mutex
	series map[string][]sample
	errs   map[string]int
}

type sample struct {
	at time.Time
	v  float64
}

func (r *resources) add(key string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.series[key] = append(r.series[key], sample{time.Now(), v})
}

// SoakScenario is the nemesis scenario for s with the resource sampler
// (every interval) and the growth invariants.
func SoakScenario(s Schedule, interval time.Duration) Scenario {
	sc := NemesisScenario(s)
	sc.Name = "soak"
	sc.Doc = "The nemesis run long, with resource growth checked: " + sc.Doc
	sc.Cluster.Env = append(sc.Cluster.Env, soakEnv...)
	res := &resources{series: map[string][]sample{}, errs: map[string]int{}}
	inject, check := sc.Inject, sc.Check
	sc.Inject = func(ctx context.Context, d *Drill) (func(context.Context) error, error) {
		sctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); res.run(sctx, d.Cluster, interval) }()
		heal, err := inject(ctx, d)
		if err != nil {
			stop()
			<-done
			return nil, err
		}
		return func(ctx context.Context) error {
			err := heal(ctx)
			stop()
			<-done
			return err
		}, nil
	}
	sc.Check = func(d *Drill, r *Result) []Invariant {
		return append(check(d, r), res.invariants()...)
	}
	return sc
}

// run samples until ctx ends.
func (r *resources) run(ctx context.Context, c *cluster.Cluster, interval time.Duration) {
	rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(c.RedisURL, "redis://"), MaxRetries: -1})
	defer rdb.Close()
	keys := stream.KeysFor(canvasName)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		r.sampleOnce(ctx, c, rdb, keys)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *resources) sampleOnce(ctx context.Context, c *cluster.Cluster, rdb *redis.Client, keys stream.Keys) {
	miss := func(key string) { r.mu.Lock(); r.errs[key]++; r.mu.Unlock() }
	for _, p := range c.Processes() {
		pid := p.Pid()
		if pid == 0 || p.Paused() {
			continue // down or frozen by a fault: nothing to measure
		}
		if v, err := rssBytes(pid); err == nil {
			r.add(p.Name+" rss", v)
		} else {
			miss(p.Name + " rss")
		}
		if v, err := openFiles(pid); err == nil {
			r.add(p.Name+" fds", v)
		} else {
			miss(p.Name + " fds")
		}
		if v, err := metric(ctx, p.URL(), "go_goroutines"); err == nil {
			r.add(p.Name+" goroutines", v)
		} else {
			miss(p.Name + " goroutines")
		}
	}
	if pid := c.RedisPid(); pid != 0 {
		if v, err := rssBytes(pid); err == nil {
			r.add("redis-server rss", v)
		}
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if info, err := rdb.InfoMap(qctx, "memory").Result(); err == nil {
		if v, err := strconv.ParseFloat(info["Memory"]["used_memory"], 64); err == nil {
			r.add("redis redis-memory", v)
		}
	} else {
		miss("redis redis-memory")
	}
	if n, err := rdb.XLen(qctx, keys.Stream).Result(); err == nil {
		r.add("redis stream-len", float64(n))
	} else {
		miss("redis stream-len")
	}
	if n, ok, err := c.StoreBytes(); ok && err == nil {
		r.add("store store-bytes", float64(n))
	}
}

// invariants judge each series: the last third against the first third.
func (r *resources) invariants() []Invariant {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.series))
	for k := range r.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var grew, figures []string
	for _, k := range keys {
		ss := r.series[k]
		metricName := k[strings.LastIndex(k, " ")+1:]
		b := growthBounds[metricName]
		if len(ss) < 6 {
			grew = append(grew, fmt.Sprintf("%s: only %d samples", k, len(ss)))
			continue
		}
		n := len(ss) / 3
		first, last := median(ss[:n]), median(ss[len(ss)-n:])
		limit := first*b.factor + b.slack
		figures = append(figures, fmt.Sprintf("%s %s→%s", k, human(first, b.unit), human(last, b.unit)))
		if last > limit {
			grew = append(grew, fmt.Sprintf("%s grew from %s to %s (limit %s)", k, human(first, b.unit), human(last, b.unit), human(limit, b.unit)))
		}
	}
	return []Invariant{{"no resource grows steadily (last third vs first third)", len(grew) == 0 && len(keys) > 0,
		fmt.Sprintf("%d series, %d grew%s; first → last third: %s", len(keys), len(grew), prefixed(": ", strings.Join(grew, "; ")), strings.Join(figures, ", "))}}
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func median(ss []sample) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = s.v
	}
	sort.Float64s(v)
	return v[len(v)/2]
}

func human(v float64, unit string) string {
	if unit == "bytes" {
		return fmt.Sprintf("%.1fMiB", v/(1<<20))
	}
	return fmt.Sprintf("%.0f", v)
}

// rssBytes reads a process's resident set from /proc.
func rssBytes(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// openFiles counts a process's open file descriptors.
func openFiles(pid int) (float64, error) {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return float64(len(entries)), err
}

// metric reads one unlabelled sample from a process's /metrics.
func metric(ctx context.Context, base, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("%s/metrics has no %s", base, name)
}
