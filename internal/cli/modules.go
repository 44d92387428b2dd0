package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/engine"
)

// moduleCommands lists the command groups backed by the engine.
func (a *app) moduleCommands() []*cobra.Command {
	return []*cobra.Command{a.imageCommand(), a.vmCommand(), a.snapshotCommand(), a.gcCommand(), a.doctorCommand()}
}

// engine builds the engine from the loaded configuration (only commands that need state do).
func (a *app) engine(opts engine.Options) (*engine.Engine, error) {
	return engine.New(a.cfg, opts)
}

// inspectCommand is an `inspect REF` command printing what get returns as indented JSON.
func (a *app) inspectCommand(use, short string, get func(context.Context, *engine.Engine, string) (any, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			v, err := get(cmd.Context(), e, args[0])
			if err != nil {
				return err
			}
			return printJSON(a.stdout, v)
		},
	}
}

// removeCommand is an `rm REF...` command printing each removed ID, also when a later one fails.
func (a *app) removeCommand(use, short string, rm func(context.Context, *engine.Engine, []string) ([]string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			removed, err := rm(cmd.Context(), e, args)
			for _, r := range removed {
				fmt.Fprintln(a.stdout, r)
			}
			return err
		},
	}
}
