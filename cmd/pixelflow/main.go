// Command pixelflow runs the shared pixel canvas. One binary holds every
// role (pixelflow help lists them; cli.go):
//
//	pixelflow serve    api + relay + gateway in one process
//	pixelflow api      HTTP write path and snapshot (+ relay on the embedded store)
//	pixelflow relay    outbox → Redis stream sequencer (needs MongoDB)
//	pixelflow gateway  Redis stream → WebSocket fan-out
//	pixelflow probe    GET /readyz of a running pixelflow; exit 0 when ready
//	                   (container healthchecks: the image has no shell or curl)
//
// Running the roles apart lets a drill kill one of them for real.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// probe asks a running pixelflow whether it is ready: GET url (default
// http://127.0.0.1:$PORT/readyz, PORT default 8080) must answer 200 within
// 3 seconds.
func probe(ctx context.Context, args []string, getenv func(string) string) error {
	url := "http://127.0.0.1:8080/readyz"
	if p := getenv("PORT"); p != "" {
		url = "http://127.0.0.1:" + p + "/readyz"
	}
	switch len(args) {
	case 0:
	case 1:
		url = args[0]
	default:
		return fmt.Errorf("usage: pixelflow probe [url]")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bad url %q: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}
