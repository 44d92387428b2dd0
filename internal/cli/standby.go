package cli

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

func (a *app) snapshotStandby() *cobra.Command {
	var pool snapshot.StandbyPool
	var memory, storage, output string
	var refill bool
	cmd := &cobra.Command{
		Use:   "standby [flags] SNAPSHOT [COUNT]",
		Short: "Keep COUNT clones of a snapshot ready, guest paused, for vm clone to take over",
		Long: "Keep a standby pool: COUNT clones of the snapshot made ahead of demand (own disks, network\n" +
			"and identity, hypervisor started, guest paused), hidden from vm list. A 'vm clone' of the\n" +
			"snapshot whose options resolve to the pool's (the flags below; --name is free) takes one\n" +
			"over, which skips the hypervisor start, and the pool refills in the background. Each\n" +
			"standby holds its hypervisor's memory. COUNT 0 removes the pool; without COUNT the pool is shown.",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			var st *engine.StandbyStatus
			switch {
			case refill:
				st, err = e.FillStandby(cmd.Context(), args[0])
			case len(args) == 1:
				st, err = e.StandbyOf(cmd.Context(), args[0])
			default:
				if pool.Count, err = strconv.Atoi(args[1]); err != nil {
					return fmt.Errorf("COUNT %q is not a number: give how many standby clones to keep (0 removes the pool)", args[1])
				}
				if pool.Memory, err = optionalSize("--memory", memory); err == nil {
					pool.Storage, err = optionalSize("--storage", storage)
				}
				if err != nil {
					return err
				}
				if pool.CPU < 0 || pool.NICs < 0 {
					return fmt.Errorf("--cpu and --nics must be >= 0 (0 inherits from the snapshot)")
				}
				st, err = e.SetStandby(cmd.Context(), args[0], pool)
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(a.stdout, st)
			}
			count := 0
			if st.Pool != nil {
				count = st.Pool.Count
			}
			fmt.Fprintf(a.stdout, "%s\t%s\t%d/%d standby clones ready\n", st.SnapshotID, st.Snapshot, len(st.Ready), count)
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&pool.CPU, "cpu", 0, "boot CPUs of the standbys (0 = inherit)")
	f.StringVar(&memory, "memory", "", "memory size (empty = inherit)")
	f.StringVar(&storage, "storage", "", "COW disk size (empty = inherit)")
	f.IntVar(&pool.NICs, "nics", 0, "number of NICs (0 = inherit)")
	f.StringVar(&pool.Network, "network", "", "CNI conflist name (empty = inherit)")
	f.StringVar(&pool.Bridge, "bridge", "", "TAP-on-bridge mode (exclusive with --network)")
	f.BoolVar(&pool.NoDirectIO, "no-direct-io", false, "page cache instead of O_DIRECT (default: inherit)")
	f.StringVarP(&output, "output", "o", "", "print the pool as json")
	f.BoolVar(&refill, "refill", false, "refill the pool to its count (what vm clone runs in the background)")
	_ = f.MarkHidden("refill")
	return cmd
}

// maxRefillLog bounds the refill log: it starts over once larger.
const maxRefillLog = 1 << 20

// refillStandby starts `cocoon snapshot standby --refill SNAPSHOT` detached, with this
// command's global flags, its output appended to standby-refill.log in the log dir (kept under
// maxRefillLog): the clone that took a standby over returns without waiting for its replacement.
func (a *app) refillStandby(cmd *cobra.Command) func(string) {
	return func(snapID string) {
		args := []string{}
		global := cmd.Root().PersistentFlags()
		cmd.Flags().Visit(func(f *pflag.Flag) {
			if global.Lookup(f.Name) != nil {
				args = append(args, "--"+f.Name+"="+f.Value.String())
			}
		})
		args = append(args, "snapshot", "standby", "--refill", snapID)
		logPath := filepath.Join(a.cfg.LogDir, "standby-refill.log")
		flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
		if st, err := os.Stat(logPath); err == nil && st.Size() > maxRefillLog {
			flags |= os.O_TRUNC
		}
		logf, err := os.OpenFile(logPath, flags, 0o600)
		if err != nil {
			slog.Warn("standby pool not refilled", "snapshot", snapID, "err", err)
			return
		}
		defer logf.Close()
		c := exec.Command("/proc/self/exe", args...)
		c.Stdout, c.Stderr = logf, logf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := c.Start(); err != nil {
			slog.Warn("standby pool not refilled", "snapshot", snapID, "err", err)
			return
		}
		_ = c.Process.Release()
	}
}
