package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pixelflow/pixelflow/internal/harness/logbuf"
)

// startLogged runs role on a fresh DATA_DIR (the embedded store's file and
// the private redis-server's AOF, as a first `pixelflow serve` has them)
// with its log in logs, and waits until it is ready.
func startLogged(t *testing.T, logs *logbuf.Buffer, extra map[string]string, role string) *Main {
	t.Helper()
	env := map[string]string{"DATA_DIR": t.TempDir(), "PORT": "0", "HOST": "127.0.0.1", "INSTANCE_ID": "fresh"}
	for k, v := range extra {
		env[k] = v
	}
	m := NewMain()
	m.LogOutput = logs
	if err := m.ParseFlags([]string{role}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := waitReady("http://" + m.Addr); err != nil {
		_ = m.Close()
		t.Fatal(err)
	}
	return m
}

// TestCleanFirstStartLogsNoWarning: a first start on a fresh DATA_DIR, a
// pixel placed, and a shutdown log nothing at WARN or ERROR (a first epoch
// and a stream that does not exist yet are normal), and the last line
// says shutdown finished and what it drained.
func TestCleanFirstStartLogsNoWarning(t *testing.T) {
	var logs logbuf.Buffer
	m := startLogged(t, &logs, nil, "serve")
	if code := postStatus(t, "http://"+m.Addr, `{"gx":1,"gy":1,"color":"#ABCDEF"}`); code != 201 {
		t.Fatalf("POST: %d", code)
	}
	// Published counts the relay's canaries too, so a canary published
	// first says nothing about the pixel: wait for an empty outbox.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := m.store.Backlog(context.Background())
		if err == nil && n == 0 && m.relay.Status().Published >= 1 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(logs.Bytes()))
	for sc.Scan() {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("not JSON: %s", sc.Text())
		}
		if l["level"] == "WARN" || l["level"] == "ERROR" {
			t.Errorf("clean start logged %s", sc.Text())
		}
		lines = append(lines, l)
	}
	if len(lines) < 3 || lines[0]["msg"] != "starting" {
		t.Fatalf("log %s: want starting first", logs.Bytes())
	}
	// Published counts the canaries too.
	last := lines[len(lines)-1]
	if pub, _ := last["relay_published"].(float64); last["msg"] != "shutdown complete" || last["websockets_closed"] != 0.0 || pub < 1 || last["outbox_pending"] != 0.0 || last["took_s"] == nil {
		t.Errorf("last line %v: want shutdown complete with websockets_closed 0, relay_published ≥ 1, outbox_pending 0 and took_s", last)
	}
	if p, _ := last["relay_position"].(string); !strings.Contains(p, ":") || strings.HasPrefix(p, ":") || strings.HasSuffix(p, ":0") {
		t.Errorf("relay_position %q: want <epoch>:<seq ≥ 1>", p)
	}
}

// TestTextLogFormat: LOG_FORMAT=text writes key=value lines, for a person
// at a terminal, from the first line to the last.
func TestTextLogFormat(t *testing.T) {
	var logs logbuf.Buffer
	m := startLogged(t, &logs, map[string]string{"LOG_FORMAT": "text", "DATA_DIR": "memory"}, "api")
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	out := strings.TrimSpace(string(logs.Bytes()))
	lines := strings.Split(out, "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "{") || !strings.HasPrefix(l, "time=") || !strings.Contains(l, " level=") {
			t.Errorf("not a text line: %s", l)
		}
	}
	if !strings.Contains(lines[0], "msg=starting ") || !strings.Contains(lines[len(lines)-1], `msg="shutdown complete"`) {
		t.Errorf("text log from %q to %q: want starting … shutdown complete", lines[0], lines[len(lines)-1])
	}
}
