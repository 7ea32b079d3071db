// Command pixelflow runs the shared pixel canvas. One binary holds every role:
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
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/pixelflow/pixelflow/internal/config"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		if err := probe(context.Background(), os.Args[2:], os.Getenv); err != nil {
			fmt.Fprintln(os.Stderr, "pixelflow probe:", err)
			os.Exit(1)
		}
		return
	}
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			config.Usage(os.Stdout)
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pixelflow:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := m.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "pixelflow:", err)
		_ = m.Close()
		os.Exit(1)
	}
	select {
	case <-ctx.Done():
		m.Logger.Info("shutting down", "role", m.Config.Role)
	case <-m.Done(): // serving failed: Close reports why
	}
	stop()
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pixelflow: shutdown:", err)
		os.Exit(1)
	}
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
