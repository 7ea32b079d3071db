package chaos

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/cluster"
)

// The generator draws by index, so a seed means a schedule only as long as
// the catalogue of its shape keeps its faults, order, targets and hold
// bounds. These are the schedules of seeds 1–3 for the single-node shapes
// (local, MongoDB, containers) as of 2026-12-07, hashed: a fault added for
// another shape (the failover faults of a Sentinel-replicated Redis) must
// leave them byte-identical. A deliberate change to these catalogues
// changes them: update the hashes then, and pick the teeth seeds again
// (teethSeed, teethRejoinSeed).
var singleNodeSchedules = map[string]string{
	"local/1":      "0b3c1dec1ce12d77952ec432dc7dbcdc2ba08530653ca8410327c873b1503967",
	"local/2":      "fa1992b7c4bf6811dbafc53f81e730acd605912b0757da90ddbc3ee6c87856e5",
	"local/3":      "62dab158394ac71cf34bb56e53019311052d8dc54325b62368c15f4753fc59ca",
	"mongo/1":      "c84ede21e5b96fd3fc927ff0ccf43672e1476a06fa141306579493bae422e9ee",
	"mongo/2":      "c4f624efc8e548de25a6159c6f1fe038157d6bfe75b55978ef17b34982184098",
	"mongo/3":      "0502c0cb56eba8d4ec28063d626325e3e29339d55409e36cb3898f8a440e2e3a",
	"containers/1": "159645f7b0938dd5828ef8c7b2988bf2c2c236fd71c1a98e2c2f8bb107cd4c92",
	"containers/2": "80c7d574d41314d81675ffb61ce75c5843810e09ffd2accf1cda488214ea35b5",
	"containers/3": "61be202f3efc88c229db2effa73e2ef88568d39661bf563d66ad65d2aaf79141",
}

func TestSingleNodeSchedulesUnchanged(t *testing.T) {
	shapes := map[string]cluster.Shape{
		"local":      localShape,
		"mongo":      {API: "api", Relays: []string{"relay-1", "relay-2"}, Gateways: []string{"gateway-1", "gateway-2"}, Mongo: true},
		"containers": {API: "api", Gateways: []string{"gateway-1", "gateway-2"}, Containers: true},
	}
	for name, sh := range shapes {
		for _, seed := range []uint64{1, 2, 3} {
			b, err := json.Marshal(Generate(seed, 2*time.Minute, 2, Catalogue(sh)))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(b)
			key := fmt.Sprintf("%s/%d", name, seed)
			if got := hex.EncodeToString(sum[:]); got != singleNodeSchedules[key] {
				t.Errorf("%s: the schedule's hash is %s, was %s: the %s catalogue changed", key, got, singleNodeSchedules[key], name)
			}
		}
	}
}
