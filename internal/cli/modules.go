package cli

import "github.com/spf13/cobra"

// moduleCommands lists the command groups backed by the engine.
func (a *app) moduleCommands() []*cobra.Command { return nil }
