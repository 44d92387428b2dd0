package qemu

import (
	"fmt"
	"net"
	"os"
	"regexp"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// A state file may come from another host (snapshot import), and its header's layout goes
// into QEMU's argv (-smp, -device for hot-added vCPUs, queue and NIC properties), so every
// value is checked against closed sets and bounds before use: a driver name or property key
// from the header could otherwise add options (e.g. "loader,file=/etc/shadow") to -device.

const (
	maxVCPUs       = 1024 // q35's limit in recent QEMU; 7.2 allows 288
	maxStateMemory = 16 << 40
	maxStateDisks  = 128
	maxStateNICs   = 64
	maxTopologyID  = 1 << 16
)

// topologyProps are the CpuInstanceProperties QEMU may list for a vCPU slot.
var topologyProps = map[string]bool{"node-id": true, "drawer-id": true, "book-id": true, "socket-id": true,
	"die-id": true, "cluster-id": true, "module-id": true, "core-id": true, "thread-id": true}

var (
	hotCPUIDRE = regexp.MustCompile(`^cpu[0-9]{1,4}$`)
	dimmIDRE   = regexp.MustCompile(`^dimm[0-9]{1,2}$`)
	rootPortRE = regexp.MustCompile(`^rp[0-9]{1,3}$`)
)

// validateMemory checks the hot-add reservation and the DIMMs plugged into it.
func (l layout) validateMemory() error {
	switch {
	case l.MemSlots < 0 || l.MemSlots > memSlots || len(l.DIMMs) > l.MemSlots:
		return fmt.Errorf("%d DIMMs in %d memory slots, at most %d slots", len(l.DIMMs), l.MemSlots, memSlots)
	case l.MaxMemBytes < 0 || l.MaxMemBytes > maxStateMemory:
		return fmt.Errorf("max memory %d bytes is out of range", l.MaxMemBytes)
	}
	ids := map[string]bool{}
	for i, d := range l.DIMMs {
		switch {
		case !dimmIDRE.MatchString(d.ID) || ids[d.ID]:
			return fmt.Errorf("DIMM %d: id %q is not a unique dimm<number>", i, d.ID)
		case d.Size <= 0 || d.Size%(1<<20) != 0 || d.Size > l.MaxMemBytes:
			return fmt.Errorf("DIMM %d: size %d bytes is out of range", i, d.Size)
		case d.Slot < 0 || d.Slot >= l.MemSlots:
			return fmt.Errorf("DIMM %d: slot %d is out of range 0-%d", i, d.Slot, l.MemSlots-1)
		}
		ids[d.ID] = true
	}
	if l.MaxMemBytes != 0 && l.totalMemory() > l.MaxMemBytes {
		return fmt.Errorf("memory %d bytes is above the reserved %d", l.totalMemory(), l.MaxMemBytes)
	}
	return nil
}

// validate checks a layout read from a state file header.
func (l layout) validate() error {
	arch, err := archOf(l.Arch)
	switch {
	case err != nil:
		return err
	case l.Accel != accelKVM && l.Accel != accelTCG:
		return fmt.Errorf("accelerator %q is not %s or %s", l.Accel, accelKVM, accelTCG)
	case l.BootCPUs < 1 || l.MaxCPUs < l.BootCPUs || l.MaxCPUs > maxVCPUs || l.cpus() > l.MaxCPUs:
		return fmt.Errorf("%d boot + %d hot-added vCPUs of at most %d is out of range 1-%d", l.BootCPUs, len(l.HotCPUs), l.MaxCPUs, maxVCPUs)
	case l.MemoryBytes < limits.MinMemory || l.MemoryBytes > maxStateMemory || l.MemoryBytes%(1<<20) != 0:
		return fmt.Errorf("memory %d bytes is not a whole number of MiB from 64 MiB to 16 TiB", l.MemoryBytes)
	case len(l.Disks) > maxStateDisks || len(l.NICs) > maxStateNICs:
		return fmt.Errorf("%d disks and %d NICs, at most %d and %d", len(l.Disks), len(l.NICs), maxStateDisks, maxStateNICs)
	case l.AgentPorts != 0 && l.AgentPorts != agentPorts:
		return fmt.Errorf("%d guest agent ports, not %d", l.AgentPorts, agentPorts)
	case l.RootPorts != 0 && (l.RootPorts < len(l.NICs) || l.RootPorts > maxStateNICs+spareRootPorts):
		return fmt.Errorf("%d root ports for %d NICs is out of range", l.RootPorts, len(l.NICs))
	}
	if err := l.validateMemory(); err != nil {
		return err
	}
	ids := map[string]bool{}
	for i, c := range l.HotCPUs {
		if err := c.validate(l.Accel, arch.hotCPU[l.Accel]); err != nil {
			return fmt.Errorf("hot-added vCPU %d: %w", i, err)
		}
		if ids[c.ID] {
			return fmt.Errorf("hot-added vCPU %d: id %q is used twice", i, c.ID)
		}
		ids[c.ID] = true
	}
	for i, d := range l.Disks {
		if d.Queues < 1 || d.Queues > maxVCPUs || !validQueueSize(d.QueueSize, 4) {
			return fmt.Errorf("disk %d: %d queues of %d entries is out of range", i, d.Queues, d.QueueSize)
		}
		if d.Bus != "" && !rootPortRE.MatchString(d.Bus) {
			return fmt.Errorf("disk %d: bus %q is not a root port (rp<number>)", i, d.Bus)
		}
	}
	for i, n := range l.NICs {
		if err := n.validate(); err != nil {
			return fmt.Errorf("NIC %d: %w", i, err)
		}
	}
	return nil
}

// validate checks a hot-added vCPU; want is the machine's vCPU device type under accel ("" =
// the machine has no vCPU hot-plug).
func (c hotCPU) validate(accel, want string) error {
	switch {
	case want == "":
		return fmt.Errorf("driver %q: this machine type cannot hot-add vCPUs", c.Driver)
	case c.Driver != want:
		return fmt.Errorf("driver %q is not the %s vCPU type %s", c.Driver, accel, want)
	}
	if !hotCPUIDRE.MatchString(c.ID) {
		return fmt.Errorf("id %q is not cpu<number>", c.ID)
	}
	if len(c.Props) == 0 {
		return fmt.Errorf("no topology properties")
	}
	for k, v := range c.Props {
		if !topologyProps[k] {
			return fmt.Errorf("property %q is not a vCPU topology property", k)
		}
		if v < 0 || v >= maxTopologyID {
			return fmt.Errorf("property %s=%d is out of range", k, v)
		}
	}
	return nil
}

func (n nicLayout) validate() error {
	if hw, err := net.ParseMAC(n.MAC); err != nil || len(hw) != 6 || hw[0]&1 != 0 {
		return fmt.Errorf("MAC %q is not a unicast Ethernet address", n.MAC)
	}
	switch {
	case n.Queues < 1 || n.Queues > maxVCPUs:
		return fmt.Errorf("%d queue pairs is out of range 1-%d", n.Queues, maxVCPUs)
	case !validQueueSize(n.QueueSize, minNetQueueSize):
		return fmt.Errorf("queue size %d is not a power of two from %d to %d", n.QueueSize, minNetQueueSize, maxQueueSize)
	case n.MTU < 0 || n.MTU > 65535:
		return fmt.Errorf("MTU %d is out of range", n.MTU)
	}
	return nil
}

func validQueueSize(q, least int) bool {
	return q >= least && q <= maxQueueSize && q&(q-1) == 0
}

// CheckState implements hypervisor.Snapshotter: it reads the state file's header as
// StartFromSnapshot would, without launching anything, and checks that it agrees with the
// snapshot record.
func (b *Backend) CheckState(s hypervisor.SnapshotSource) error {
	src := sourceOf(s)
	f, h, err := openState(src.StateFile)
	if err != nil {
		return err
	}
	f.Close()
	if err := checkAgreement(src, h.Layout); err != nil {
		return err
	}
	if src.MemoryFile == "" {
		return nil
	}
	// QEMU would grow a short file in place, writing into the snapshot.
	if st, err := os.Lstat(src.MemoryFile); err != nil || !st.Mode().IsRegular() || st.Size() != h.Layout.MemoryBytes {
		return fmt.Errorf("memory file is not a regular file of %d bytes (the snapshot's memory size)", h.Layout.MemoryBytes)
	}
	return nil
}
