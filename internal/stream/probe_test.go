package stream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pixelflow/pixelflow/internal/harness/redistest"
	"github.com/pixelflow/pixelflow/internal/harness/redistopo"
	"github.com/pixelflow/pixelflow/internal/redisurl"
	"github.com/pixelflow/pixelflow/internal/stream"
)

// TestProbeTellsWhatRedisCannotDo: the readiness probe writes, so each
// Redis that answers PING but cannot take pixelflow's writes fails it with
// its condition: a replica (read_only), a Sentinel URL whose master name no
// Sentinel knows (unknown_master), a node that is gone (unreachable). A
// primary, and the Sentinels' primary, pass. (Sentinels that are all down
// take go-redis 36 s of retries to report: TestConditionNamesRedisStates
// holds that reply instead.)
func TestProbeTellsWhatRedisCannotDo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	primary := redistest.MustStart(t, false)
	replica := redistest.MustStartReplica(t, primary)
	probe := func(rdb redis.UniversalClient) error {
		t.Helper()
		defer rdb.Close()
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		defer pcancel()
		if err := rdb.Ping(pctx).Err(); err != nil && !strings.Contains(err.Error(), "sentinel") {
			t.Logf("PING: %v", err)
		}
		return stream.New(rdb, "c", 0).Probe(pctx)
	}
	if err := probe(redis.NewClient(&redis.Options{Addr: primary.Addr()})); err != nil {
		t.Fatalf("the primary: %v", err)
	}
	replicaClient := redis.NewClient(&redis.Options{Addr: replica.Addr()})
	if err := replicaClient.Ping(ctx).Err(); err != nil {
		t.Fatalf("the replica does not answer PING: %v", err)
	}
	err := probe(replicaClient)
	if got := stream.Condition(err); got != "read_only" || !strings.Contains(err.Error(), "read_only") {
		t.Errorf("a replica: %v (condition %q), want read_only", err, got)
	}

	topo := redistopo.StartSentinel(t, redistopo.SentinelOptions{})
	wrong := strings.Replace(topo.URL(), "master_name="+topo.MasterName, "master_name=nosuchmaster", 1)
	for _, c := range []struct{ url, want string }{
		{topo.URL(), ""},
		{wrong, "unknown_master"},
		{"redis://127.0.0.1:1", "unreachable"},
	} {
		target, err := redisurl.Parse(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		err = probe(target.Client())
		if got := stream.Condition(err); got != c.want {
			t.Errorf("%s: %v (condition %q), want %q", c.url, err, got, c.want)
		}
	}
}

// TestConditionNamesRedisStates: the states no topology here produces
// cheaply, by the replies Redis gives for them.
func TestConditionNamesRedisStates(t *testing.T) {
	for err, want := range map[error]string{
		nil: "",
		errors.New("CLUSTERDOWN The cluster is down"):                   "cluster_down",
		errors.New("LOADING Redis is loading the dataset in memory"):    "loading",
		fmt.Errorf("write: %w", context.DeadlineExceeded):               "timeout",
		errors.New("dial tcp 127.0.0.1:1: connect: connection refused"): "unreachable",
	} {
		if got := stream.Condition(err); got != want {
			t.Errorf("Condition(%v) = %q, want %q", err, got, want)
		}
	}
}
