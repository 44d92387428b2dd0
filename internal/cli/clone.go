package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/view"
)

// optionalSize parses a size flag where empty means "inherit".
func optionalSize(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	return parseSize(flag, s)
}

func (a *app) vmClone() *cobra.Command {
	var o engine.CloneOptions
	var memory, storage, output string
	cmd := &cobra.Command{
		Use:   "clone [flags] SNAPSHOT",
		Short: "Clone a new running VM from a snapshot (fresh network identity)",
		Long: "Clone a new VM that resumes from a snapshot. Memory is not copied: the clone maps the\n" +
			"snapshot's memory copy-on-write and pages come in lazily as the guest touches them (so\n" +
			"--on-demand is always in effect on QEMU). Resources may grow, never shrink; 0 or empty\n" +
			"inherits. More vCPUs, memory (in 128 MiB steps, guest sees it at once) and NICs are hot-added.\n" +
			"When the snapshot keeps standby clones of the same options ('cocoon snapshot standby'),\n" +
			"one is taken over instead, and the pool refills in the background.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			o.Snapshot = args[0]
			if o.Memory, err = optionalSize("--memory", memory); err != nil {
				return err
			}
			if o.Storage, err = optionalSize("--storage", storage); err != nil {
				return err
			}
			if o.CPU < 0 || o.NICs < 0 || o.QueueSize < 0 || o.DiskQueueSize < 0 {
				return fmt.Errorf("--cpu, --nics and queue sizes must be >= 0 (0 inherits from the snapshot)")
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			o.Refill = a.refillStandby(cmd)
			vm, err := e.Clone(cmd.Context(), o)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(a.stdout, view.VMOf(vm))
			}
			fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", vm.ID, vm.Name, vm.State)
			printCloneHints(a.stdout, vm)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Name, "name", "", "VM name (default cocoon-clone-<id>)")
	f.IntVar(&o.CPU, "cpu", 0, "boot CPUs (0 = inherit; must be >= the snapshot's)")
	f.StringVar(&memory, "memory", "", "memory size (empty = inherit; must be >= the snapshot's; growth is hot-added)")
	f.StringVar(&storage, "storage", "", "COW disk size (empty = inherit; must be >= the snapshot's)")
	f.IntVar(&o.NICs, "nics", 0, "number of NICs (0 = inherit; more are hot-added)")
	f.IntVar(&o.QueueSize, "queue-size", 0, "virtio-net ring depth (0 = inherit)")
	f.IntVar(&o.DiskQueueSize, "disk-queue-size", 0, "virtio-blk ring depth (0 = inherit)")
	f.StringVar(&o.Network, "network", "", "CNI conflist name (empty = inherit)")
	f.StringVar(&o.Bridge, "bridge", "", "TAP-on-bridge mode (exclusive with --network)")
	f.BoolVar(&o.NoDirectIO, "no-direct-io", false, "page cache instead of O_DIRECT (default: inherit)")
	f.BoolVar(&o.Pull, "pull", false, "pull the base image by the snapshot's digest when missing")
	onDemandFlag(f, &o.OnDemand)
	f.StringVar(&o.Platform, "platform", "", "refuse unless the snapshot is of this platform (linux/amd64 or linux/arm64)")
	f.StringVarP(&output, "output", "o", "", "print the VM as json")
	return cmd
}

// onDemandFlag accepts --on-demand (lazy memory loading on Cloud Hypervisor): a QEMU clone or
// restore already maps the snapshot's memory file copy-on-write, loading pages on first touch.
func onDemandFlag(f *pflag.FlagSet, v *bool) {
	f.BoolVar(v, "on-demand", false, "load memory pages lazily (always the case on QEMU, which maps the snapshot's memory copy-on-write)")
}

// printCloneHints prints the guest-side commands that move the guest's network config to the
// clone's new identity (the guest still has the snapshot's addresses).
func printCloneHints(w io.Writer, vm *engine.VM) {
	if len(vm.Networks) == 0 {
		return
	}
	fmt.Fprintf(w, "\nThe clone resumed with the snapshot's guest network config. Inside the guest, run:\n\n")
	fmt.Fprintln(w, "echo 3 > /proc/sys/vm/drop_caches")
	if vm.Config.ImageKind == "cloudimg" {
		fmt.Fprintln(w, "rm -f /etc/systemd/network/10-*.network")
		// --configs appeared in cloud-init 23.1; older guests (Debian 12 has 22.4) refuse it.
		fmt.Fprintln(w, "cloud-init clean --logs --seed --configs network 2>/dev/null || cloud-init clean --logs --seed")
		fmt.Fprintln(w, "cloud-init init --local && cloud-init init")
		fmt.Fprintln(w, "cloud-init modules --mode=config && systemctl restart systemd-networkd")
		return
	}
	var macs, addrs, gws []string
	for _, n := range vm.Networks {
		macs = append(macs, "'"+n.MAC+"'")
		addrs = append(addrs, fmt.Sprintf("'%s/%d'", n.IP, n.Prefix))
		gws = append(gws, "'"+n.Gateway+"'")
	}
	fmt.Fprintf(w, "hostnamectl set-hostname %s\n", vm.Name)
	fmt.Fprintln(w, "rm -f /etc/systemd/network/10-*.network")
	fmt.Fprintf(w, "macs=(%s)\naddrs=(%s)\ngws=(%s)\n", strings.Join(macs, " "), strings.Join(addrs, " "), strings.Join(gws, " "))
	// Written literally: the %s are for the guest's printf.
	io.WriteString(w, `for i in "${!macs[@]}"; do
  f="/etc/systemd/network/10-${macs[$i]//:/}.network"
  printf '[Match]\nMACAddress=%s\n\n[Network]\nAddress=%s\n' "${macs[$i]}" "${addrs[$i]}" > "$f"
  [ -n "${gws[$i]}" ] && printf 'Gateway=%s\n' "${gws[$i]}" >> "$f"
done
`)
	fmt.Fprintln(w, "systemctl restart systemd-networkd")
	fmt.Fprintln(w, "# busybox guests (no systemd):")
	for i, n := range vm.Networks {
		fmt.Fprintf(w, "ip link set dev eth%d up && ip addr flush dev eth%d && ip addr add %s/%d dev eth%d\n", i, i, n.IP, n.Prefix, i)
	}
	if gw := vm.Networks[0].Gateway; gw != "" {
		fmt.Fprintf(w, "ip route replace default via %s\n", gw)
	}
}

func (a *app) vmRestore() *cobra.Command {
	var o engine.RestoreOptions
	var memory, storage, output string
	cmd := &cobra.Command{
		Use:   "restore [flags] VM SNAPSHOT",
		Short: "Restore a running VM to one of its snapshots (network identity kept)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if o.Memory, err = optionalSize("--memory", memory); err != nil {
				return err
			}
			if o.Storage, err = optionalSize("--storage", storage); err != nil {
				return err
			}
			if o.CPU < 0 {
				return fmt.Errorf("--cpu must be >= 0 (0 keeps the VM's)")
			}
			e, err := a.engine(engine.Options{})
			if err != nil {
				return err
			}
			vm, err := e.Restore(cmd.Context(), args[0], args[1], o)
			if err != nil {
				return err
			}
			return a.printVMResult(output, vm)
		},
	}
	cmd.Flags().IntVar(&o.CPU, "cpu", 0, "boot CPUs (0 = keep; must be >= the snapshot's)")
	cmd.Flags().StringVar(&memory, "memory", "", "memory size (empty = keep; must be >= the snapshot's; growth is hot-added)")
	onDemandFlag(cmd.Flags(), &o.OnDemand)
	cmd.Flags().StringVar(&storage, "storage", "", "COW disk size (empty = keep; must be >= the snapshot's)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "print the VM as json")
	return cmd
}
