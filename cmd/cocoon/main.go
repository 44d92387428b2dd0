// Command cocoon is a daemonless engine for microVMs: pull images, run VMs, snapshot and clone them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cocoonstack/cocoon/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
