package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pixelflow/pixelflow/internal/buildinfo"
	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
)

// TestBuildInfoIsLoggedAndServed: the startup line and
// pixelflow_build_info on /metrics carry the binary's build.
func TestBuildInfoIsLoggedAndServed(t *testing.T) {
	var logs logbuf.Buffer
	m := NewMain()
	m.LogOutput = &logs
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "build"}
	if err := m.ParseFlags([]string{"api"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	m.Build = buildinfo.Info{Version: "v9.9.9", Revision: "abc123", Modified: true, GoVersion: "go1.99.0"}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	resp, err := http.Get("http://" + m.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `pixelflow_build_info{goversion="go1.99.0",revision="abc123+dirty",version="v9.9.9"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	if !sc.Scan() {
		t.Fatal("no log line")
	}
	var first map[string]any
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil {
		t.Fatal(err)
	}
	if first["msg"] != "starting" || first["version"] != "v9.9.9" || first["revision"] != "abc123+dirty" || first["goversion"] != "go1.99.0" || first["role"] != "api" {
		t.Errorf("first log line %s, want starting with the build", sc.Text())
	}
}
