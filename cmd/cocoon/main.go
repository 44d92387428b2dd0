// Command cocoon is a daemonless engine for microVMs: pull images, run VMs, snapshot and clone them.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cocoonstack/cocoon/internal/cli"
	"github.com/cocoonstack/cocoon/internal/console/relay"
)

func main() {
	// A console relay is this binary re-executed (see relay.Start): it never reaches the CLI.
	relay.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
