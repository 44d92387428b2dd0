package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/console"
	"github.com/cocoonstack/cocoon/internal/engine"
)

func (a *app) vmConsole() *cobra.Command {
	var escape string
	cmd := &cobra.Command{
		Use:   "console [flags] VM",
		Short: "Attach an interactive console (escape sequence: <escape-char> then '.')",
		Long: "Attach to the VM's serial console. <escape-char>. disconnects (the VM keeps running),\n" +
			"<escape-char>? prints help, and the escape char twice sends it once.\n" +
			"Only one console session per VM at a time; a second one is refused. A serial console\n" +
			"cannot carry the window size: run `stty rows R cols C` (or busybox `resize`) in the guest.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			esc, err := console.ParseEscape(escape)
			if err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			sock, lockPath, vm, err := e.ConsolePaths(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			attached := false
			err = console.Attach(cmd.Context(), sock, lockPath, a.stdin, a.stdout, esc, func() {
				attached = true
				fmt.Fprintf(a.stderr, "Connected to %s (escape sequence: %s.)\r\n", vm.Name, escape)
			})
			if errors.Is(err, console.ErrAlreadyAttached) {
				return fmt.Errorf("console of VM %s is already attached in another session: detach it there first", vm.Name)
			}
			if attached {
				fmt.Fprintf(a.stderr, "\r\nDisconnected from %s.\r\n", vm.Name)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&escape, "escape-char", "^]", "escape character (single char or ^X caret notation)")
	return cmd
}
