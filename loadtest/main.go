// Command loadtest measures how long a committed pixel takes to reach every
// client, under load, with the history checker proving nothing was lost.
//
//	go run ./loadtest -scenario smoke            # CI: 50 clients, 100 writes/s, 10 s
//	go run ./loadtest -scenario steady           # 200 clients, 200 writes/s, 30 s
//	go run ./loadtest -scenario capacity         # raise the rate until P99 > 100 ms
//	go run ./loadtest -scenario regions          # 1,000 clients each viewing 1/16 of 1024×1024
//	go run ./loadtest -scenario steady -cpus-server 0 -cpus-load 1
//	go run ./loadtest -api URL -gateways URL,URL # aim at a running deployment
//
// Without -api it builds pixelflow and starts it: steady and capacity as
// one `pixelflow serve` process with its own redis-server, the deployment
// the side-by-side harness (../shared/peer) measures; smoke (and -topology
// cluster) as an api and gateways on an e2e provider (docker when healthy,
// else local; E2E_PROVIDER overrides). Each step's CPU is read from /proc
// after a warm-up: per process, per delivery, with the machine's busy share
// and what other processes used (a step where they used more than
// -max-other cores is flagged disturbed). Writes are open-loop:
// each is scheduled by the clock, not by the previous answer, so a slow
// server cannot hide its latency; a write's HTTP latency counts from its
// scheduled time.
//
// Latency of a delivery = the client's receive time − the event's
// committedAt. Both clocks are this host's on loopback; across hosts the
// clocks' offset adds to every figure (use NTP/PTP-synced hosts and read
// the stage timings, which share that caveat).
//
// -wire chooses what the clients speak. "timed" (the default) asks for
// committedAt and publishedAt (?fields=), which the figures above need;
// "json" (the compact events every client gets by default) and "binary"
// (pixelflow.v1.bin, as the browser page) measure what a delivery costs on
// the wire, and without commit times their delivery latency is counted
// from the write's send, as the side-by-side harness counts it:
//
//	go run ./loadtest -scenario steady -wire json   # bytes/delivery of the default frames
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pixelflow/pixelflow/internal/canvas"
)

// Params are one load test's knobs.
type Params struct {
	Scenario string        `json:"scenario"`
	Clients  int           `json:"clients"`
	Rate     int           `json:"rate"` // writes/s (capacity: the first step)
	Duration time.Duration `json:"durationNs"`
	Gateways int           `json:"gateways"`
	InFlight int           `json:"maxInFlight"`
	Region   int           `json:"region"` // pixels written in [0,Region)²
	Canvas   int           `json:"canvas"` // canvas side when pixelflow is started here
	// View, when set, makes every client hold a square of View×View
	// regions placed at random on the canvas (?regions=) instead of the
	// whole canvas: the regions scenario.
	View int `json:"viewRegions,omitempty"`
	// Capacity: rate steps and how long each lasts; the P99 that ends it.
	Steps    []int         `json:"steps,omitempty"`
	StepTime time.Duration `json:"stepTimeNs,omitempty"`
	P99Limit time.Duration `json:"p99LimitNs,omitempty"`

	API      string   `json:"api,omitempty"`
	Targets  []string `json:"gatewayUrls,omitempty"`
	Out      string   `json:"-"`
	Provider string   `json:"-"`

	// Topology is what runs pixelflow when the load test starts it: "serve"
	// (one process and its own redis-server, as the side-by-side harness
	// runs it) or "cluster" (an api and Gateways gateway processes behind
	// the e2e providers' proxies).
	Topology string `json:"topology"`
	// CPUsServer and CPUsLoad pin pixelflow (and its Redis) and the load
	// generator to separate CPUs (taskset lists, e.g. "0" and "1").
	CPUsServer string `json:"cpusServer,omitempty"`
	CPUsLoad   string `json:"cpusLoad,omitempty"`
	// MaxOther is the CPU (in cores) that other processes may use during a
	// step's measured window before the step is flagged disturbed.
	MaxOther float64 `json:"maxOtherCores"`
	// Wire is what the clients speak: "timed" (JSON with committedAt and
	// publishedAt), "json" (compact JSON) or "binary" (pixelflow.v1.bin).
	Wire string `json:"wire"`
	// RedisReplicas are replicas of the serve topology's redis-server
	// (REDIS_URL still names the primary); WaitReplicas is pixelflow's
	// REDIS_WAIT_REPLICAS, so its cost can be measured on and off.
	RedisReplicas int `json:"redisReplicas,omitempty"`
	WaitReplicas  int `json:"waitReplicas,omitempty"`
}

// Wire encodings of the load test's clients (Params.Wire).
const (
	wireTimed  = "timed"
	wireJSON   = "json"
	wireBinary = "binary"
)

func scenarios() map[string]Params {
	return map[string]Params{
		"smoke":    {Clients: 50, Rate: 100, Duration: 10 * time.Second, Gateways: 2, Topology: "cluster"},
		"steady":   {Clients: 200, Rate: 200, Duration: 30 * time.Second, Gateways: 1, Topology: "serve"},
		"capacity": {Clients: 200, Rate: 200, Gateways: 1, Topology: "serve", Steps: []int{200, 400, 600, 800, 1000, 1200, 1500, 2000}, StepTime: 8 * time.Second, P99Limit: 100 * time.Millisecond},
		// Each client views 4×4 regions of 64 (a 256×256 square, 1/16 of
		// the canvas) while writes land anywhere: a region gets its
		// writes' share of deliveries, about Clients/16 per write.
		"regions": {Clients: 1000, Rate: 1000, Duration: 30 * time.Second, Gateways: 1, Topology: "serve", Canvas: 1024, Region: 1024, View: 4},
	}
}

func parse(args []string) (Params, error) {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	scenario := fs.String("scenario", "smoke", "smoke, steady, capacity or regions")
	clients := fs.Int("clients", 0, "WebSocket clients (default: the scenario's)")
	rate := fs.Int("rate", 0, "writes per second (capacity: the first step)")
	dur := fs.Duration("duration", 0, "how long writes run (not for capacity)")
	gateways := fs.Int("gateways", 0, "gateway processes to start")
	inflight := fs.Int("max-inflight", 512, "writes in flight at most; a write due while all are busy is counted as shed")
	region := fs.Int("region", 64, "pixels are written in [0,region)² (regions: the whole canvas)")
	canvasSide := fs.Int("canvas", 64, "canvas width and height when pixelflow is started here (regions: 1024)")
	view := fs.Int("view", 0, "regions: each client views a square of view×view regions of 64 pixels (default 4)")
	api := fs.String("api", "", "base URL of a running api (with -gateways); default: start pixelflow here")
	targets := fs.String("gateways-urls", "", "comma-separated base URLs of running gateways (with -api)")
	out := fs.String("out", "loadtest/out", "report directory")
	topology := fs.String("topology", "", `what runs pixelflow: "serve" (one process and its own redis-server, like the side-by-side harness; steady and capacity) or "cluster" (api + gateway processes behind proxies; smoke)`)
	cpusServer := fs.String("cpus-server", "", "pin pixelflow and its Redis to these CPUs (taskset list, e.g. 0)")
	cpusLoad := fs.String("cpus-load", "", "pin the load generator to these CPUs (taskset list, e.g. 1)")
	maxOther := fs.Float64("max-other", 0.25, "cores other processes may use during a step's measured window before it is flagged disturbed")
	wire := fs.String("wire", wireTimed, `what the clients speak: "timed" (JSON with committedAt and publishedAt, for every latency stage), "json" (compact JSON, the default frames) or "binary" (pixelflow.v1.bin); without times, latency counts from each write's send`)
	replicas := fs.Int("redis-replicas", 0, "serve: replicas of its redis-server (0..2; REDIS_URL names the primary)")
	waitReplicas := fs.Int("wait-replicas", 0, "serve: REDIS_WAIT_REPLICAS (each store mark waits until this many replicas have the appends; ≤ -redis-replicas)")
	if err := fs.Parse(args); err != nil {
		return Params{}, err
	}
	p, ok := scenarios()[*scenario]
	if !ok {
		return p, fmt.Errorf("-scenario %q: want smoke, steady, capacity or regions", *scenario)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	p.Scenario, p.InFlight, p.API, p.Out = *scenario, *inflight, *api, *out
	// The scenario's canvas and region unless the flags say otherwise.
	if set["canvas"] || p.Canvas == 0 {
		p.Canvas = *canvasSide
	}
	if set["region"] || p.Region == 0 {
		p.Region = *region
	}
	if set["view"] {
		p.View = *view
	}
	if set["clients"] {
		p.Clients = *clients
	}
	if set["rate"] {
		p.Rate = *rate
		if p.Steps != nil {
			var steps []int
			for _, s := range p.Steps {
				if s >= *rate {
					steps = append(steps, s)
				}
			}
			p.Steps = steps
		}
	}
	if set["duration"] {
		p.Duration = *dur
	}
	if set["gateways"] {
		p.Gateways = *gateways
	}
	if set["topology"] {
		p.Topology = *topology
	}
	if set["gateways"] && !set["topology"] && p.Gateways > 1 {
		p.Topology = "cluster" // several gateways are several processes
	}
	p.CPUsServer, p.CPUsLoad, p.MaxOther, p.Wire = *cpusServer, *cpusLoad, *maxOther, *wire
	p.RedisReplicas, p.WaitReplicas = *replicas, *waitReplicas
	if *targets != "" {
		p.Targets = strings.Split(*targets, ",")
	}
	switch {
	case p.Clients < 1 || p.Clients > 20000:
		return p, fmt.Errorf("-clients %d: want 1..20000", p.Clients)
	case p.Rate < 1 || p.Rate > 100000:
		return p, fmt.Errorf("-rate %d: want 1..100000", p.Rate)
	case p.Steps == nil && (p.Duration < time.Second || p.Duration > time.Hour):
		return p, fmt.Errorf("-duration %s: want 1s..1h", p.Duration)
	case p.InFlight < 1:
		return p, fmt.Errorf("-max-inflight %d: want ≥ 1", p.InFlight)
	case p.View < 0 || p.View > 16 || p.View*canvasRegionSide > p.Canvas:
		return p, fmt.Errorf("-view %d: want 1..16 regions, at most the canvas (%d px, regions of %d)", p.View, p.Canvas, canvasRegionSide)
	case p.View > 0 && p.Wire == wireBinary:
		return p, errors.New("-wire binary: regions are JSON only")
	case p.Region < 1 || p.Region > p.Canvas:
		return p, fmt.Errorf("-region %d: want 1..canvas (%d)", p.Region, p.Canvas)
	case (p.API == "") != (len(p.Targets) == 0):
		return p, errors.New("-api and -gateways-urls go together")
	case p.Gateways < 1 || p.Gateways > 16:
		return p, fmt.Errorf("-gateways %d: want 1..16", p.Gateways)
	case p.Topology != "serve" && p.Topology != "cluster":
		return p, fmt.Errorf("-topology %q: want serve or cluster", p.Topology)
	case p.Topology == "serve" && p.Gateways != 1:
		return p, fmt.Errorf("-gateways %d: the serve topology is one process; use -topology cluster", p.Gateways)
	case p.MaxOther < 0:
		return p, fmt.Errorf("-max-other %g: want ≥ 0", p.MaxOther)
	case p.Wire != wireTimed && p.Wire != wireJSON && p.Wire != wireBinary:
		return p, fmt.Errorf("-wire %q: want timed, json or binary", p.Wire)
	case p.RedisReplicas < 0 || p.RedisReplicas > 2:
		return p, fmt.Errorf("-redis-replicas %d: want 0..2", p.RedisReplicas)
	case p.WaitReplicas < 0 || p.WaitReplicas > p.RedisReplicas:
		return p, fmt.Errorf("-wait-replicas %d: want 0..-redis-replicas (%d): a mark waits for replicas that exist", p.WaitReplicas, p.RedisReplicas)
	case p.RedisReplicas > 0 && (p.Topology != "serve" || p.API != ""):
		return p, errors.New("-redis-replicas and -wait-replicas need the serve topology started here (-topology serve, no -api)")
	case (p.CPUsServer != "" || p.CPUsLoad != "") && p.API != "":
		return p, errors.New("-cpus-server and -cpus-load pin processes the load test starts; not with -api")
	}
	for name, v := range map[string]string{"cpus-server": p.CPUsServer, "cpus-load": p.CPUsLoad} {
		if v != "" && strings.Trim(v, "0123456789,-") != "" {
			return p, fmt.Errorf("-%s %q: want a CPU list such as 0 or 0-1 or 0,2", name, v)
		}
	}
	return p, nil
}

func main() {
	p, err := parse(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, p, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	if err := rep.Write(p.Out); err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
	fmt.Printf("report: %s/report.html\n", p.Out)
	if problems := rep.History.Problems(); len(problems) > 0 {
		fmt.Fprintf(os.Stderr, "loadtest: FAIL: %s\n", strings.Join(problems, "; "))
		os.Exit(1)
	}
	fmt.Println("loadtest: 1 passed, 0 failed")
}

// canvasRegionSide is canvas.RegionSide, for the flag checks.
const canvasRegionSide = canvas.RegionSide
