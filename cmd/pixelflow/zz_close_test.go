package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestZZCloseTime(t *testing.T) {
	m := NewMain()
	env := map[string]string{"DATA_DIR": "memory", "PORT": "0", "RATE_LIMIT": "0", "CANVAS_WIDTH": "64", "CANVAS_HEIGHT": "64", "INSTANCE_ID": "bench", "LOG_LEVEL": "error"}
	_ = m.ParseFlags([]string{"serve"}, func(k string) string { return env[k] })
	t0 := time.Now()
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Log("run", time.Since(t0))
	for i := 0; i < 20; i++ {
		resp, err := http.Post("http://"+m.Addr+"/api/pixels", "application/json", strings.NewReader(`{"gx":1,"gy":1,"color":"#000000"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		time.Sleep(5 * time.Millisecond)
	}
	t0 = time.Now()
	m.Close()
	t.Log("close", time.Since(t0), m.relay.Status())
}
