package qemu

import (
	"fmt"
	"net"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

const (
	minMemory = 64 << 20
	// sun_path holds 108 bytes including the terminating NUL.
	maxSocketPath = 107
	// VIRTIO_BLK_ID_BYTES: longer serials would be cut silently in the guest.
	maxSerialLen = 20
)

// validate checks what QEMU would otherwise reject half-way through its startup, with
// messages that say what to change. tapByName is set for DebugCommand, which names TAPs
// instead of passing fds.
func validate(s hypervisor.VMSpec, tapByName bool) error {
	switch {
	case s.ID == "":
		return fmt.Errorf("VM spec has no ID")
	case s.CPUs < 1:
		return fmt.Errorf("VM %s: %d CPUs: at least 1 is needed", s.ID, s.CPUs)
	case s.MaxCPUs != 0 && s.MaxCPUs < s.CPUs:
		return fmt.Errorf("VM %s: max vCPUs %d is below its %d vCPUs", s.ID, s.MaxCPUs, s.CPUs)
	case s.MemoryBytes < minMemory:
		return fmt.Errorf("VM %s: memory %d bytes is below the 64 MiB minimum", s.ID, s.MemoryBytes)
	case s.MemoryBytes%(1<<20) != 0:
		return fmt.Errorf("VM %s: memory %d bytes is not a whole number of MiB", s.ID, s.MemoryBytes)
	case s.HugePages && s.MemoryBytes%(2<<20) != 0:
		return fmt.Errorf("VM %s: memory must be a multiple of 2 MiB with hugepages", s.ID)
	case s.RunDir == "" || s.LogDir == "" || s.MemoryDir == "":
		return fmt.Errorf("VM %s: run, log and memory directories must all be set", s.ID)
	}
	if p := qmpPath(s.RunDir); len(p) > maxSocketPath {
		return fmt.Errorf("VM %s: socket path %s is %d bytes, over the %d-byte unix socket limit: use a shorter root dir",
			s.ID, p, len(p), maxSocketPath)
	}
	if err := validateBoot(s); err != nil {
		return err
	}
	if q := s.DiskQueueSize; q != 0 && (q < 4 || q > maxQueueSize || q&(q-1) != 0) {
		return fmt.Errorf("VM %s: disk queue size %d must be a power of two from 4 to %d", s.ID, q, maxQueueSize)
	}
	for _, d := range s.Disks {
		if err := validateDisk(s.ID, d); err != nil {
			return err
		}
	}
	for i, n := range s.NICs {
		if err := validateNIC(n, tapByName); err != nil {
			return fmt.Errorf("VM %s NIC %d: %w", s.ID, i, err)
		}
	}
	return nil
}

func validateBoot(s hypervisor.VMSpec) error {
	b := s.Boot
	switch {
	case (b.Kernel == "") == (b.Firmware == ""):
		return fmt.Errorf("VM %s: boot needs exactly one of a kernel (direct boot) or UEFI firmware", s.ID)
	case b.Firmware != "" && b.FirmwareVars == "":
		return fmt.Errorf("VM %s: UEFI boot needs a per-VM firmware variables file", s.ID)
	case b.Firmware != "" && (b.Initrd != "" || b.Cmdline != ""):
		return fmt.Errorf("VM %s: an initrd or kernel command line needs direct kernel boot, not UEFI", s.ID)
	}
	return nil
}

func validateDisk(id string, d hypervisor.Disk) error {
	switch {
	case d.Path == "":
		return fmt.Errorf("VM %s: a %s disk has no path", id, d.Role)
	case !filepath.IsAbs(d.Path):
		return fmt.Errorf("VM %s: disk path %s must be absolute", id, d.Path)
	case d.Format != hypervisor.FormatRaw && d.Format != hypervisor.FormatQcow2:
		return fmt.Errorf("VM %s: disk %s has format %q: use raw or qcow2", id, d.Path, d.Format)
	case len(d.Serial) > maxSerialLen:
		return fmt.Errorf("VM %s: disk serial %q is longer than %d bytes (virtio-blk limit)", id, d.Serial, maxSerialLen)
	}
	return nil
}

func validateNIC(n hypervisor.NIC, tapByName bool) error {
	if _, err := net.ParseMAC(n.MAC); err != nil {
		return fmt.Errorf("bad MAC %q: %w", n.MAC, err)
	}
	switch {
	case tapByName && n.TapName == "":
		return fmt.Errorf("no TAP name")
	case !tapByName && len(n.Files) == 0:
		return fmt.Errorf("no open TAP queue fds")
	case !tapByName && n.Queues != 0 && n.Queues != len(n.Files):
		return fmt.Errorf("%d queue pairs but %d TAP fds: pass one fd per queue pair", n.Queues, len(n.Files))
	}
	if q := n.QueueSize; q != 0 && (q < minNetQueueSize || q > maxQueueSize || q&(q-1) != 0) {
		return fmt.Errorf("queue size %d must be a power of two from %d to %d", q, minNetQueueSize, maxQueueSize)
	}
	if n.MTU < 0 || n.MTU > 65535 {
		return fmt.Errorf("MTU %d out of range", n.MTU)
	}
	return nil
}
