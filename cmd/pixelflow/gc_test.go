package main

import (
	"os"
	"testing"
)

// The collector's defaults apply only where the environment is silent, and
// the memory limit follows a cgroup limit when there is one.
func TestGCSettings(t *testing.T) {
	noFile := func(string) ([]byte, error) { return nil, os.ErrNotExist }
	cgroup := func(v string) func(string) ([]byte, error) {
		return func(p string) ([]byte, error) {
			if p != "/sys/fs/cgroup/memory.max" {
				return nil, os.ErrNotExist
			}
			return []byte(v), nil
		}
	}
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name     string
		getenv   func(string) string
		readFile func(string) ([]byte, error)
		percent  int
		limit    int64
	}{
		{"defaults, no cgroup", env(), noFile, defaultGCPercent, 0},
		{"GOGC set", env("GOGC", "100"), noFile, 0, 0},
		{"GOGC off", env("GOGC", "off"), noFile, 0, 0},
		{"cgroup limit", env(), cgroup("4294967296\n"), defaultGCPercent, 3 << 30},
		{"cgroup unlimited", env(), cgroup("max\n"), defaultGCPercent, 0},
		{"GOMEMLIMIT set", env("GOMEMLIMIT", "1GiB"), cgroup("4294967296\n"), defaultGCPercent, 0},
	} {
		p, l := gcSettings(tc.getenv, tc.readFile)
		if p != tc.percent || l != tc.limit {
			t.Errorf("%s: percent %d limit %d, want %d %d", tc.name, p, l, tc.percent, tc.limit)
		}
	}
}
