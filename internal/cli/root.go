// Package cli holds the cobra commands: they parse flags, call the engine and print results.
// No decisions are taken here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/logging"
)

// app carries what every command needs once the root pre-run has loaded the configuration.
type app struct {
	configFile string
	cfg        *config.Config
	logCloser  io.Closer
	stdout     io.Writer
	stderr     io.Writer
	stdin      *os.File
}

// Execute runs the CLI with args and returns the process exit code.
func Execute(ctx context.Context, args []string) int {
	a := &app{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	root := a.rootCommand()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if a.logCloser != nil {
		a.logCloser.Close() //nolint:errcheck
	}
	if err != nil {
		if msg := oneLine(err); msg != "" { // empty: a guest command's own exit status
			fmt.Fprintf(a.stderr, "Error: %s\n", msg)
		}
		var ec interface{ ExitCode() int }
		if errors.As(err, &ec) {
			return ec.ExitCode()
		}
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "cocoon",
		Short:         "Lightweight microVM engine: pull images, run, snapshot and clone VMs",
		Long:          "Cocoon runs each VM in its own hypervisor process (QEMU, Cloud Hypervisor or Firecracker)\nwith no daemon: every command reads and updates on-disk state under locks.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.load(cmd)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "config file (YAML, TOML or JSON, by extension)")
	pf.String("root-dir", "", "root directory for persistent data (env COCOON_ROOT_DIR, default /var/lib/cocoon)")
	pf.String("run-dir", "", "runtime directory for sockets, PIDs and VM disks (env COCOON_RUN_DIR, default /var/lib/cocoon/run)")
	pf.String("log-dir", "", "directory for VM and hypervisor logs (env COCOON_LOG_DIR, default /var/log/cocoon)")
	pf.String("log-level", "", "log level: debug, info, warn, error (env COCOON_LOG_LEVEL, default info)")
	pf.String("cni-conf-dir", "", "CNI conflist directory (env COCOON_CNI_CONF_DIR, default /etc/cni/net.d)")
	pf.String("cni-bin-dir", "", "CNI plugin binary directory (env COCOON_CNI_BIN_DIR, default /opt/cni/bin)")
	pf.String("dns", "", "DNS servers for VMs, comma separated (env COCOON_DNS, default 8.8.8.8,1.1.1.1)")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())
	})

	root.AddCommand(a.versionCommand(), a.completionCommand())
	for _, c := range a.moduleCommands() {
		root.AddCommand(c)
	}
	return root
}

// load builds the configuration and logger once, before any command runs.
func (a *app) load(cmd *cobra.Command) error {
	// cobra merges the root's persistent flags into cmd.Flags(); viper only lets flags the
	// user actually set override env and file.
	cfg, err := config.Load(a.configFile, cmd.Flags())
	if err != nil {
		return err
	}
	closer, err := logging.Setup(cfg.Log, a.stderr)
	if err != nil {
		return err
	}
	a.cfg, a.logCloser = cfg, closer
	return nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
