package qemu

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// StartFromSnapshot implements hypervisor.Snapshotter. QEMU starts with the snapshot's
// machine (from the state file's header) and -incoming defer, loads the state, and is then
// grown to spec: NICs whose MAC or queue layout differ are unplugged and replaced, missing
// vCPUs are hot-added. With src.MemoryFile the guest RAM is that file mapped share=off, so
// nothing is copied and clones of one snapshot share its page cache; without, RAM comes from
// the stream into a fresh share=on file, so the new VM is again quick to snapshot.
func (b *Backend) StartFromSnapshot(ctx context.Context, spec hypervisor.VMSpec, s hypervisor.SnapshotSource) (hypervisor.Process, error) {
	src := sourceOf(s)
	accel, err := resolveAccel(spec.Accel, spec.Arch)
	if err == nil {
		err = b.validate(spec, false)
	}
	if err != nil {
		return hypervisor.Process{}, err
	}
	state, hdr, err := openState(src.StateFile)
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("start VM %s from snapshot: %w", spec.ID, err)
	}
	defer state.Close()
	saved := hdr.Layout
	if err := checkSnapshot(spec, src, saved, accel); err != nil {
		return hypervisor.Process{}, fmt.Errorf("start VM %s from snapshot %s: %w", spec.ID, src.StateFile, err)
	}

	l := saved
	l.RootPorts = saved.rootPorts() // fixed for the machine's life: NICs may be added into spares
	l.RAM = ramLayout{File: ramPath(spec), Shared: true}
	if src.MemoryFile != "" {
		l.RAM = ramLayout{File: src.MemoryFile, Shared: false}
	}
	serial, err := newSerialLine()
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("start VM %s from snapshot: %w", spec.ID, err)
	}
	swap := make([]bool, len(spec.NICs))
	for i, n := range spec.NICs[:len(saved.NICs)] {
		swap[i] = nicLayoutOf(n) != saved.NICs[i]
	}
	ab := argBuilder{spec: spec, layout: l, accel: accel, tcgCacheMB: b.tcgCacheMB, incoming: true, swap: swap, aio: b.aioMode(),
		kernelless: resumeWithoutKernel(spec), serial: serial.qemu}
	args, files := ab.build()
	r := restorer{spec: spec, layout: l, ignoreShared: saved.RAM.Shared, state: state, swap: swap, swapFDs: ab.swapFDs}

	ctx, cancel := context.WithTimeout(ctx, b.restoreWait)
	defer cancel()
	p, err := b.launch(ctx, spec, l, args, files, serial, func(c *qmpClient) error { return r.run(ctx, c) })
	if err != nil {
		return p, fmt.Errorf("start from snapshot: %w", err)
	}
	return p, nil
}

// checkSnapshot refuses, before anything is launched, what cannot load or grow.
func checkSnapshot(spec hypervisor.VMSpec, src source, saved layout, accel string) error {
	if err := checkAgreement(src, saved); err != nil {
		return err
	}
	switch {
	case spec.CPUs < saved.cpus():
		return fmt.Errorf("%d vCPUs is below the snapshot's %d: vCPUs cannot be removed", spec.CPUs, saved.cpus())
	case spec.CPUs > saved.MaxCPUs:
		return fmt.Errorf("%d vCPUs is above %d, the most the snapshotted VM was booted to take", spec.CPUs, saved.MaxCPUs)
	case len(spec.NICs) < len(saved.NICs):
		return fmt.Errorf("%d NICs, the snapshot has %d: NICs cannot be removed", len(spec.NICs), len(saved.NICs))
	case spec.Balloon != saved.Balloon:
		return fmt.Errorf("balloon %v, the snapshot's VM had balloon %v", spec.Balloon, saved.Balloon)
	case (spec.Boot.Firmware != "") != saved.UEFI:
		return fmt.Errorf("UEFI boot %v, the snapshot's VM had UEFI boot %v", spec.Boot.Firmware != "", saved.UEFI)
	case spec.Arch != saved.Arch:
		return fmt.Errorf("the snapshot is of a linux/%s machine, not linux/%s: clone it onto its own platform", cmp.Or(saved.Arch, "amd64"), cmp.Or(spec.Arch, "amd64"))
	case accel != saved.Accel:
		return fmt.Errorf("the snapshot was taken under %s and cannot resume under %s: use --accel %s", saved.Accel, accel, saved.Accel)
	}
	if err := checkMemoryGrowth(spec.MemoryBytes, saved); err != nil {
		return err
	}
	if err := checkAddedDevices(spec, saved); err != nil {
		return err
	}
	if src.MemoryFile == "" {
		return nil
	}
	if abs, err := filepath.Abs(src.MemoryFile); err != nil || abs == ramPath(spec) {
		return fmt.Errorf("memory file %s is the VM's own RAM file, which a launch replaces: use the snapshot's copy", src.MemoryFile)
	}
	st, err := os.Stat(src.MemoryFile)
	if err != nil {
		return fmt.Errorf("snapshot memory file: %w", err)
	}
	// QEMU would grow a short file in place, writing into the snapshot.
	if !st.Mode().IsRegular() || st.Size() != saved.MemoryBytes {
		return fmt.Errorf("memory file %s is not a regular file of %d bytes (the snapshot's memory size)", src.MemoryFile, saved.MemoryBytes)
	}
	return nil
}

// checkAgreement refuses a state file that does not match its snapshot record.
func checkAgreement(src source, saved layout) error {
	switch {
	case saved.RAM.Shared && src.MemoryFile == "":
		return fmt.Errorf("the state leaves guest RAM to a separate memory file, and none was given")
	case !saved.RAM.Shared && src.MemoryFile != "":
		return fmt.Errorf("the state carries guest RAM itself, yet a memory file (%s) was given", src.MemoryFile)
	case src.MemoryBytes != saved.totalMemory() || src.CPUs != saved.cpus() || !slices.Equal(src.MACs, saved.macs()):
		return fmt.Errorf("snapshot record (%d vCPUs, %d bytes, MACs %v) and state file (%d vCPUs, %d bytes, MACs %v) disagree: the snapshot is damaged",
			src.CPUs, src.MemoryBytes, src.MACs, saved.cpus(), saved.totalMemory(), saved.macs())
	}
	return nil
}

func (l layout) macs() []string {
	macs := make([]string, len(l.NICs))
	for i, n := range l.NICs {
		macs[i] = n.MAC
	}
	return macs
}

// restorer drives one StartFromSnapshot over QMP, once QEMU waits for its stream.
type restorer struct {
	spec         hypervisor.VMSpec
	layout       layout // updated as the machine is grown, then recorded
	ignoreShared bool
	state        *os.File
	swap         []bool
	swapFDs      [][]string
}

func (r *restorer) run(ctx context.Context, c *qmpClient) error {
	start := time.Now()
	// MIGRATION events tell when the load ends, with no query-migrate polling.
	caps := []map[string]any{{"capability": "events", "state": true}}
	if r.ignoreShared {
		caps = append(caps, map[string]any{"capability": "x-ignore-shared", "state": true})
	}
	if err := c.execute("migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return err
	}
	if err := c.executeWithFile("getfd", map[string]string{"fdname": stateFDName}, r.state, nil); err != nil {
		return err
	}
	if err := c.execute("migrate-incoming", map[string]string{"uri": "fd:" + stateFDName}, nil); err != nil {
		return err
	}
	if err := waitIncoming(ctx, c); err != nil {
		return fmt.Errorf("load snapshot state: %w", err)
	}
	loaded := time.Now()
	if err := r.freezeBalloon(c); err != nil {
		return err
	}
	for i := range r.swap {
		if r.swap[i] { // the old NIC must not talk on the new TAP before it is gone
			if err := c.execute("set_link", map[string]any{"name": nicID(i), "up": false}, nil); err != nil {
				return err
			}
		}
	}
	if err := c.execute("cont", nil, nil); err != nil {
		return err
	}
	if err := r.addDisks(c); err != nil {
		return err
	}
	// Added NICs first: the guest names them while the snapshot's NICs still hold eth0…, so
	// they keep the names after those (NIC i is usually eth<i>).
	if err := r.addNICs(c); err != nil {
		return err
	}
	// The guest acknowledges unplugs while running; hot-add vCPUs meanwhile.
	for i := range r.swap {
		if r.swap[i] {
			if err := c.execute("device_del", map[string]string{"id": nicID(i)}, nil); err != nil {
				return fmt.Errorf("unplug snapshot NIC %d: %w", i, err)
			}
		}
	}
	if err := r.addCPUs(c); err != nil {
		return err
	}
	if err := r.addMemory(c); err != nil {
		return err
	}
	if err := r.swapNICs(c); err != nil {
		return err
	}
	slog.Debug("qemu resumed from snapshot", "vm", r.spec.ID, "load", loaded.Sub(start),
		"grow_and_swap", time.Since(loaded), "nics_swapped", r.swapped())
	return writeLayout(r.spec.RunDir, r.layout)
}

func (r *restorer) swapped() int {
	n := 0
	for _, s := range r.swap {
		if s {
			n++
		}
	}
	return n
}

// freezeBalloon pins the balloon target to what the guest has already given: a guest still
// inflating would have QEMU 7.2 discard those pages by punching holes in the memory file,
// which for a private mapping is the snapshot's file that other clones map too.
func (r *restorer) freezeBalloon(c *qmpClient) error {
	if !r.layout.Balloon || r.layout.RAM.Shared {
		return nil
	}
	var b struct {
		Actual int64 `json:"actual"`
	}
	if err := c.execute("query-balloon", nil, &b); err != nil {
		return err
	}
	return c.execute("balloon", map[string]int64{"value": b.Actual}, nil)
}

// swapNICs waits for each unplugged snapshot NIC to be gone, drops its throw-away TAP and
// plugs the VM's own NIC into the same root port.
func (r *restorer) swapNICs(c *qmpClient) error {
	for i, n := range r.spec.NICs {
		if !r.swap[i] {
			continue
		}
		_, err := c.waitEvent(func(m qmpMessage) bool {
			var d struct {
				Device string `json:"device"`
			}
			return m.Event == "DEVICE_DELETED" && json.Unmarshal(m.Data, &d) == nil && d.Device == nicID(i)
		})
		if err != nil {
			return fmt.Errorf("NIC %d: the guest did not release the snapshot's NIC (its kernel must handle ACPI PCI hot-unplug): %w", i, err)
		}
		if err := c.execute("netdev_del", map[string]string{"id": oldNetdevID(i)}, nil); err != nil {
			return err
		}
		// The numbers name fds QEMU inherited at launch.
		netdev := map[string]any{"type": "tap", "id": netdevID(i), "fds": strings.Join(r.swapFDs[i], ":"), "vhost": false}
		if err := c.execute("netdev_add", netdev, nil); err != nil {
			return fmt.Errorf("NIC %d: %w", i, err)
		}
		nl := nicLayoutOf(n)
		if err := c.execute("device_add", propMap("virtio-net-pci", nicProps(i, netdevID(i), nl)), nil); err != nil {
			return fmt.Errorf("NIC %d: %w", i, err)
		}
		r.layout.NICs[i] = nl
	}
	return nil
}

// addNICs plugs the NICs beyond the snapshot's into spare root ports.
func (r *restorer) addNICs(c *qmpClient) error {
	for i := len(r.layout.NICs); i < len(r.spec.NICs); i++ {
		netdev := map[string]any{"type": "tap", "id": netdevID(i), "fds": strings.Join(r.swapFDs[i], ":"), "vhost": false}
		if err := c.execute("netdev_add", netdev, nil); err != nil {
			return fmt.Errorf("add NIC %d: %w", i, err)
		}
		nl := nicLayoutOf(r.spec.NICs[i])
		if err := c.execute("device_add", propMap("virtio-net-pci", nicProps(i, netdevID(i), nl)), nil); err != nil {
			return fmt.Errorf("add NIC %d: %w", i, err)
		}
		r.layout.NICs = append(r.layout.NICs, nl)
	}
	return nil
}

// addCPUs hot-adds vCPUs into free topology slots, lowest first, until the guest has spec.CPUs.
func (r *restorer) addCPUs(c *qmpClient) error {
	need := r.spec.CPUs - r.layout.cpus()
	if need <= 0 {
		return nil
	}
	var slots []cpuSlot
	if err := c.execute("query-hotpluggable-cpus", nil, &slots); err != nil {
		return err
	}
	slots = slices.DeleteFunc(slots, func(s cpuSlot) bool {
		return s.QOMPath != "" // occupied
	})
	if len(slots) < need {
		return fmt.Errorf("%d free vCPU slots, %d needed", len(slots), need)
	}
	slices.SortFunc(slots, func(a, b cpuSlot) int {
		return compareTopology(a.Props, b.Props)
	})
	for _, s := range slots[:need] {
		cpu := hotCPU{Driver: s.Type, ID: "cpu" + strconv.Itoa(r.layout.cpus()), Props: s.Props}
		if err := c.execute("device_add", propMap(cpu.Driver, append([]prop{{"id", cpu.ID}}, sortedProps(cpu.Props)...)), nil); err != nil {
			return fmt.Errorf("hot-add vCPU %s: %w", cpu.ID, err)
		}
		r.layout.HotCPUs = append(r.layout.HotCPUs, cpu)
	}
	return nil
}

// cpuSlot is one entry of query-hotpluggable-cpus.
type cpuSlot struct {
	Type    string           `json:"type"`
	Props   map[string]int64 `json:"props"`
	QOMPath string           `json:"qom-path"` // set when the slot holds a vCPU
}

// compareTopology orders CPU slots from the outermost topology level in.
func compareTopology(a, b map[string]int64) int {
	for _, k := range []string{"node-id", "socket-id", "die-id", "cluster-id", "core-id", "thread-id"} {
		if a[k] != b[k] {
			return int(a[k] - b[k])
		}
	}
	return 0
}

// resumeWithoutKernel says whether a guest resumed from a snapshot (clone, restore) starts
// without -kernel/-initrd: QEMU reads the whole kernel into memory at start only to boot it
// again on a reboot — 14 MiB of private memory and ~20 ms for Debian's cloud kernel, in every
// clone. The boot option ROM stands in (its RAM block is in the migration stream), and a guest
// reboot powers the VM off instead (`vm start` boots it afresh), as Firecracker guests do.
// Only for an x86 bzImage, whose option ROM is known; other kernels are passed as before.
func resumeWithoutKernel(spec hypervisor.VMSpec) bool {
	a, err := archOf(spec.Arch)
	if err != nil || a.kernelROM == "" || spec.Boot.Firmware != "" || spec.Boot.Kernel == "" {
		return false
	}
	return isBzImage(spec.Boot.Kernel)
}

// isBzImage reports whether path starts with a Linux x86 boot sector header ("HdrS" at 0x202).
func isBzImage(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	magic := make([]byte, 4)
	_, err = f.ReadAt(magic, 0x202)
	return err == nil && string(magic) == "HdrS"
}
