package cli

import (
	"context"
	"fmt"
	"time"

	units "github.com/docker/go-units"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/view"
)

func (a *app) vmCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "vm", Short: "Create, run and manage VMs"}
	cmd.AddCommand(a.vmCreate("create", "Create a VM from an image", false), a.vmCreate("run", "Create and start a VM", true),
		a.vmStart(), a.vmStop(), a.vmList(), a.vmInspect(), a.vmRm(), a.vmConsole(), a.vmDebug(), a.vmClone(), a.vmRestore(), a.vmStatus(),
		a.vmExec(), a.vmCp(), a.vmPortForward(), a.vmLogs())
	return cmd
}

// createFlags are the VM flags shared by create, run and debug.
type createFlags struct {
	opts            engine.CreateOptions
	memory, storage string
	dataDisks       []string
	fc              bool
	output          string
}

func (f *createFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.opts.Name, "name", "", "VM name (default cocoon-<image>)")
	fs.IntVar(&f.opts.CPU, "cpu", 2, "boot CPUs (at most the host's core count)")
	fs.StringVar(&f.memory, "memory", "1G", "memory size (e.g. 512M, 2G)")
	fs.StringVar(&f.storage, "storage", "10G", "COW disk size (e.g. 10G, 20G)")
	fs.IntVar(&f.opts.NICs, "nics", 1, "number of network interfaces (0 = no network)")
	fs.IntVar(&f.opts.QueueSize, "queue-size", 0, "virtio-net ring depth per queue (0 = 512; qemu: power of two 256-1024)")
	fs.IntVar(&f.opts.DiskQueueSize, "disk-queue-size", 0, "virtio-blk ring depth per device (0 = 512; qemu: power of two 4-1024)")
	fs.StringVar(&f.opts.Network, "network", "", "CNI conflist name (empty = first conflist)")
	fs.StringVar(&f.opts.Bridge, "bridge", "", "TAP-on-bridge mode: existing bridge device (exclusive with --network)")
	fs.StringVar(&f.opts.User, "user", "root", "guest user for cloud-init (cloud images only)")
	fs.StringVar(&f.opts.Password, "password", "cocoon", "guest password for cloud-init (cloud images only)")
	fs.BoolVar(&f.opts.NoDirectIO, "no-direct-io", false, "use the page cache for writable disks instead of O_DIRECT")
	fs.BoolVar(&f.opts.Windows, "windows", false, "Windows guest (UEFI boot, Hyper-V enlightenments, no cidata)")
	fs.StringVar(&f.opts.Hypervisor, "hypervisor", "", "auto, qemu, cloud-hypervisor or firecracker (default from config: auto)")
	fs.BoolVar(&f.fc, "fc", false, "use the Firecracker backend (same as --hypervisor firecracker)")
	fs.StringVar(&f.opts.Accel, "accel", "", "QEMU accelerator: auto, kvm or tcg (default from config: auto)")
	fs.StringArrayVar(&f.dataDisks, "data-disk", nil, "extra disk size=SIZE[,name=NAME][,fstype=ext4|none][,mount=/path][,directio=on|off|auto]\n"+
		"(repeatable; serial = name; cloud images mount ext4 disks at /mnt/<name> by default)")
	fs.StringVar(&f.opts.Platform, "platform", "", "guest platform, linux/amd64 or linux/arm64 (default: the image's); another than the host's runs under TCG")
	fs.BoolVar(&f.opts.NoAgent, "no-agent", false, "do not deliver the guest agent (vm exec, cp, port-forward)")
}

// options parses sizes and folds --fc into the hypervisor choice.
func (f *createFlags) options(image string) (engine.CreateOptions, error) {
	o := f.opts
	o.Image = image
	var err error
	if o.Memory, err = parseSize("--memory", f.memory); err != nil {
		return o, err
	}
	if o.Storage, err = parseSize("--storage", f.storage); err != nil {
		return o, err
	}
	if o.DataDisks, err = disk.ParseDataDisks(f.dataDisks); err != nil {
		return o, err
	}
	if f.fc {
		if o.Hypervisor != "" && o.Hypervisor != "firecracker" {
			return o, fmt.Errorf("--fc conflicts with --hypervisor %s: pick one", o.Hypervisor)
		}
		o.Hypervisor = "firecracker"
	}
	if o.Windows && o.Hypervisor == "firecracker" {
		return o, fmt.Errorf("--fc and --windows are mutually exclusive: Firecracker does not support Windows guests")
	}
	if o.Accel != "" && o.Accel != "auto" && o.Accel != "kvm" && o.Accel != "tcg" {
		return o, fmt.Errorf("invalid --accel %q: use auto, kvm or tcg", o.Accel)
	}
	if o.Platform != "" {
		if o.Platform, err = platform.Parse(o.Platform); err != nil {
			return o, err
		}
	}
	return o, nil
}

// parseSize parses docker-style binary sizes (512M, 1G, 1.5GiB); negative or zero is refused.
func parseSize(flag, s string) (int64, error) {
	n, err := units.RAMInBytes(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid %s %q: use a positive size like 512M or 2G", flag, s)
	}
	return n, nil
}

func (a *app) vmCreate(use, short string, start bool) *cobra.Command {
	var f createFlags
	cmd := &cobra.Command{
		Use:   use + " [flags] IMAGE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options(args[0])
			if err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			var vm *engine.VM
			if start {
				vm, err = e.Run(cmd.Context(), o)
			} else {
				vm, err = e.Create(cmd.Context(), o)
			}
			if err != nil {
				return err
			}
			return a.printVMResult(f.output, vm)
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVarP(&f.output, "output", "o", "", "print the VM as json")
	return cmd
}

func (a *app) printVMResult(output string, vm *engine.VM) error {
	if output == "json" {
		return printJSON(a.stdout, view.VMOf(vm))
	}
	if output != "" {
		return fmt.Errorf("invalid --output %q: use json", output)
	}
	fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", vm.ID, vm.Name, vm.State)
	return nil
}

// batch runs a per-VM operation over refs and prints the IDs that succeeded.
func (a *app) batch(cmd *cobra.Command, refs []string, output string, op func(e *engine.Engine, ctx context.Context, id string) error) error {
	return a.batchWith(cmd, refs, output, func(e *engine.Engine, ctx context.Context, refs []string) ([]string, error) {
		return e.Batch(ctx, refs, func(ctx context.Context, id string) error { return op(e, ctx, id) })
	})
}

// batchWith is batch for an engine call that takes all refs at once (vm rm: one group commit).
func (a *app) batchWith(cmd *cobra.Command, refs []string, output string, run func(e *engine.Engine, ctx context.Context, refs []string) ([]string, error)) error {
	if output != "" && output != "json" {
		return fmt.Errorf("invalid --output %q: use json", output)
	}
	e, err := a.engine(engine.Options{})
	if err != nil {
		return err
	}
	ok, err := run(e, cmd.Context(), refs)
	if output == "json" {
		if perr := printJSON(a.stdout, map[string][]string{"succeeded": nonNil(ok)}); perr != nil {
			return perr
		}
	} else {
		for _, id := range ok {
			fmt.Fprintln(a.stdout, id)
		}
	}
	return err
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (a *app) vmStart() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "start VM [VM...]",
		Short: "Start created or stopped VM(s)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.batch(cmd, args, output, func(e *engine.Engine, ctx context.Context, id string) error {
				_, err := e.Start(ctx, id)
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "print {\"succeeded\": [ids]} as json")
	return cmd
}

func (a *app) vmStop() *cobra.Command {
	var output string
	var force bool
	var timeout int
	cmd := &cobra.Command{
		Use:   "stop VM [VM...]",
		Short: "Stop running VM(s): ACPI power button, then SIGTERM, then SIGKILL",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return fmt.Errorf("invalid --timeout %d: use seconds >= 0 (0 = config stop_timeout_seconds)", timeout)
			}
			return a.batch(cmd, args, output, func(e *engine.Engine, ctx context.Context, id string) error {
				_, err := e.Stop(ctx, id, engine.StopOptions{Force: force, Timeout: time.Duration(timeout) * time.Second})
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "skip the graceful ACPI shutdown, kill at once")
	cmd.Flags().IntVar(&timeout, "timeout", 0, "seconds to wait for the guest to power off (0 = config stop_timeout_seconds)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "print {\"succeeded\": [ids]} as json")
	return cmd
}

func (a *app) vmRm() *cobra.Command {
	var output string
	var force bool
	cmd := &cobra.Command{
		Use:   "rm [flags] VM [VM...]",
		Short: "Delete VM(s) (--force to stop running ones first)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.batchWith(cmd, args, output, func(e *engine.Engine, ctx context.Context, refs []string) ([]string, error) {
				return e.RemoveVMs(ctx, refs, force)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "stop running VMs first")
	cmd.Flags().StringVarP(&output, "output", "o", "", "print {\"succeeded\": [ids]} as json")
	return cmd
}

func (a *app) vmList() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List VMs with their state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			vms, err := e.ListVMs(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(a.stdout, view.VMsOf(vms))
			}
			return a.printVMTable(vms)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "o", "table", "output format: table or json")
	return cmd
}

// printVMTable prints VMs as the `vm list` table (or a sentence when there are none).
func (a *app) printVMTable(vms []engine.VM) error {
	if len(vms) == 0 {
		_, err := fmt.Fprintln(a.stdout, "No VMs found.")
		return err
	}
	rows := make([][]string, 0, len(vms))
	for _, vm := range vms {
		rows = append(rows, []string{vm.ID, vm.Name, string(vm.State), fmt.Sprint(vm.Config.CPU),
			units.BytesSize(float64(vm.Config.Memory)), units.BytesSize(float64(vm.Config.Storage)), ipList(vm),
			vm.Config.Image, vm.CreatedAt.Local().Format("2006-01-02 15:04:05")})
	}
	return printTable(a.stdout, []string{"ID", "NAME", "STATE", "CPU", "MEMORY", "STORAGE", "IP", "IMAGE", "CREATED"}, rows)
}

func (a *app) vmInspect() *cobra.Command {
	return a.inspectCommand("inspect VM", "Show detailed VM info (JSON, state as observed)", func(ctx context.Context, e *engine.Engine, ref string) (any, error) {
		vm, err := e.InspectVM(ctx, ref)
		if err != nil {
			return nil, err
		}
		v := view.VMOf(vm)
		v.Agent = e.AgentStatus(ctx, vm)
		return v, nil
	})
}

func (a *app) vmDebug() *cobra.Command {
	var f createFlags
	var o engine.DebugOptions
	cmd := &cobra.Command{
		Use:   "debug [flags] IMAGE",
		Short: "Print a copy-pasteable hypervisor command for the VM (dry run)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.CreateOptions, err = f.options(args[0]); err != nil {
				return err
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			out, err := e.Debug(cmd.Context(), o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(a.stdout, out)
			return err
		},
	}
	f.register(cmd.Flags())
	cmd.Flags().StringVar(&o.COWPath, "cow", "", "COW disk path; sockets and logs go beside it (default: ./cow-<name>.raw)")
	cmd.Flags().IntVar(&o.MaxCPU, "max-cpu", 8, "max vCPUs of the generated command (vCPUs a clone can grow to)")
	cmd.Flags().IntVar(&o.BalloonMB, "balloon", 0, "balloon size in MB (0 = a quarter of --memory)")
	cmd.Flags().StringVar(&o.CHBinary, "ch", "", "cloud-hypervisor binary the command names (default: ch_binary from the configuration)")
	return cmd
}

func (a *app) gcCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "gc",
		Short: "Remove unreferenced blobs, network leftovers and orphan VM directories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			rep, err := e.GC(cmd.Context())
			if rep != nil {
				for _, r := range [][]string{rep.Blobs, rep.Networks, rep.VMDirs, rep.Stale, rep.Snapshots} {
					for _, x := range r {
						fmt.Fprintln(a.stdout, "removed", x)
					}
				}
				for _, x := range rep.Unattributed {
					fmt.Fprintln(a.stdout, "left", x)
				}
			}
			return err
		},
	}
}
