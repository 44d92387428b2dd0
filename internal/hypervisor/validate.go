package hypervisor

import (
	"fmt"
	"net"
	"path/filepath"
)

// SizeRange is an inclusive range of power-of-two ring sizes.
type SizeRange struct{ Min, Max int }

func (r SizeRange) check(what string, v int, backend string) error {
	if v != 0 && (v < r.Min || v > r.Max || v&(v-1) != 0) {
		return fmt.Errorf("%s %d is not supported by %s: use 0 (default) or a power of two from %d to %d", what, v, backend, r.Min, r.Max)
	}
	return nil
}

// Limits are the numbers a backend accepts. The engine checks a planned VMSpec against them
// before anything is stored or created, so a VM never fails its first start on a setting
// the backend was always going to refuse.
type Limits struct {
	MinMemory     int64 // bytes; memory must also be a whole number of MiB
	MaxNICs       int
	NetQueueSize  SizeRange // virtio-net ring depth per queue
	DiskQueueSize SizeRange // virtio-blk ring depth
	MaxSerialLen  int       // disk serial bytes the guest sees in full
}

// Validate checks s against the backend's capabilities and limits. NIC MACs and TAP fds are
// checked when present: a planned spec (before the network exists) has neither, and the
// backend requires them at Start.
func (s VMSpec) Validate(c Capabilities, backend string) error {
	l := c.Limits
	switch {
	case s.ID == "":
		return fmt.Errorf("VM spec has no ID")
	case s.CPUs < 1:
		return fmt.Errorf("VM %s: %d CPUs: at least 1 is needed", s.ID, s.CPUs)
	case s.MaxCPUs != 0 && s.MaxCPUs < s.CPUs:
		return fmt.Errorf("VM %s: max vCPUs %d is below its %d vCPUs", s.ID, s.MaxCPUs, s.CPUs)
	case s.MemoryBytes < l.MinMemory:
		return fmt.Errorf("VM %s: memory %d bytes is below %s's %d MiB minimum", s.ID, s.MemoryBytes, backend, l.MinMemory>>20)
	case s.MemoryBytes%(1<<20) != 0:
		return fmt.Errorf("VM %s: memory %d bytes is not a whole number of MiB", s.ID, s.MemoryBytes)
	case s.HugePages && s.MemoryBytes%(2<<20) != 0:
		return fmt.Errorf("VM %s: memory must be a multiple of 2 MiB with hugepages", s.ID)
	case s.RunDir == "" || s.LogDir == "" || s.MemoryDir == "":
		return fmt.Errorf("VM %s: run, log and memory directories must all be set", s.ID)
	case s.Windows && !c.Windows:
		return fmt.Errorf("VM %s: hypervisor %s does not support Windows guests", s.ID, backend)
	case len(s.NICs) > l.MaxNICs:
		return fmt.Errorf("VM %s: %d NICs, but %s supports at most %d", s.ID, len(s.NICs), backend, l.MaxNICs)
	}
	if err := s.validateBoot(c, backend); err != nil {
		return err
	}
	if err := l.DiskQueueSize.check("disk queue size (--disk-queue-size)", s.DiskQueueSize, backend); err != nil {
		return fmt.Errorf("VM %s: %w", s.ID, err)
	}
	for _, d := range s.Disks {
		if err := d.validate(c, backend); err != nil {
			return fmt.Errorf("VM %s: %w", s.ID, err)
		}
	}
	for i, n := range s.NICs {
		if err := n.validate(c, backend); err != nil {
			return fmt.Errorf("VM %s NIC %d: %w", s.ID, i, err)
		}
	}
	return nil
}

func (s VMSpec) validateBoot(c Capabilities, backend string) error {
	b := s.Boot
	switch {
	case (b.Kernel == "") == (b.Firmware == ""):
		return fmt.Errorf("VM %s: boot needs exactly one of a kernel (direct boot) or UEFI firmware", s.ID)
	case b.Firmware != "" && !c.UEFI:
		return fmt.Errorf("VM %s: hypervisor %s cannot boot UEFI firmware", s.ID, backend)
	case b.Firmware != "" && c.FirmwareVars && b.FirmwareVars == "":
		return fmt.Errorf("VM %s: UEFI boot needs a per-VM firmware variables file", s.ID)
	case b.FirmwareVars != "" && !c.FirmwareVars:
		return fmt.Errorf("VM %s: hypervisor %s's firmware keeps no variables file", s.ID, backend)
	case b.Firmware != "" && (b.Initrd != "" || b.Cmdline != ""):
		return fmt.Errorf("VM %s: an initrd or kernel command line needs direct kernel boot, not UEFI", s.ID)
	}
	return nil
}

func (d Disk) validate(c Capabilities, backend string) error {
	switch {
	case d.Path == "":
		return fmt.Errorf("a %s disk has no path", d.Role)
	case !filepath.IsAbs(d.Path):
		return fmt.Errorf("disk path %s must be absolute", d.Path)
	case d.Format != FormatRaw && d.Format != FormatQcow2:
		return fmt.Errorf("disk %s has format %q: use raw or qcow2", d.Path, d.Format)
	case d.Format == FormatQcow2 && !c.Qcow2:
		return fmt.Errorf("disk %s is qcow2, which %s cannot open", d.Path, backend)
	case len(d.Serial) > c.Limits.MaxSerialLen:
		return fmt.Errorf("disk serial %q is longer than %d bytes (virtio-blk limit)", d.Serial, c.Limits.MaxSerialLen)
	}
	return nil
}

func (n NIC) validate(c Capabilities, backend string) error {
	if n.MAC != "" {
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return fmt.Errorf("bad MAC %q: %w", n.MAC, err)
		}
	}
	switch {
	case n.Queues > 1 && !c.MultiQueue:
		return fmt.Errorf("%d queue pairs: %s supports one queue pair per NIC", n.Queues, backend)
	case len(n.Files) > 0 && n.Queues != 0 && n.Queues != len(n.Files):
		return fmt.Errorf("%d queue pairs but %d TAP fds: pass one fd per queue pair", n.Queues, len(n.Files))
	case n.MTU < 0 || n.MTU > 65535:
		return fmt.Errorf("MTU %d out of range", n.MTU)
	}
	return c.Limits.NetQueueSize.check("NIC queue size (--queue-size)", n.QueueSize, backend)
}
