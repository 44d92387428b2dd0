package cli

import (
	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
)

// moduleCommands lists the command groups backed by the engine.
func (a *app) moduleCommands() []*cobra.Command {
	return []*cobra.Command{a.imageCommand(), a.vmCommand(), a.snapshotCommand(), a.gcCommand()}
}

// engine builds the engine from the loaded configuration (only commands that need state do).
func (a *app) engine(opts engine.Options) (*engine.Engine, error) {
	return engine.New(a.cfg, opts)
}
