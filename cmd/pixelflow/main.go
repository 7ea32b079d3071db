// Command pixelflow runs the shared pixel canvas. One binary holds every role:
//
//	pixelflow serve    api + relay + gateway in one process
//	pixelflow api      HTTP write path and snapshot (+ relay on the embedded store)
//	pixelflow relay    outbox → Redis stream sequencer (needs MongoDB)
//	pixelflow gateway  Redis stream → WebSocket fan-out
//
// Running the roles apart lets a drill kill one of them for real.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/pixelflow/pixelflow/internal/config"
)

func main() {
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
	<-ctx.Done()
	stop()
	m.Logger.Info("shutting down", "role", m.Config.Role)
	if err := m.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "pixelflow: shutdown:", err)
		os.Exit(1)
	}
}
