package qemu

import (
	"cmp"
	"fmt"
	"os/exec"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// sun_path holds 108 bytes including the terminating NUL.
const maxSocketPath = 107

// limits are QEMU's numbers, published through Capabilities so the engine refuses a bad
// configuration before it stores anything.
var limits = hypervisor.Limits{
	MinMemory:     64 << 20,
	MaxNICs:       8, // PCIe root ports are reserved per NIC at cold boot
	NetQueueSize:  hypervisor.SizeRange{Min: minNetQueueSize, Max: maxQueueSize},
	DiskQueueSize: hypervisor.SizeRange{Min: 4, Max: maxQueueSize},
	MaxSerialLen:  20, // VIRTIO_BLK_ID_BYTES: longer serials would be cut silently in the guest
}

// validate checks the spec against the backend's limits, then what only a launch needs: the
// socket path length and the TAP of every NIC. tapByName is set for DebugCommand, which names
// TAPs instead of passing fds.
func (b *Backend) validate(s hypervisor.VMSpec, tapByName bool) error {
	if err := s.Validate(b.Capabilities(), Name); err != nil {
		return err
	}
	if _, err := exec.LookPath(b.binaryFor(s.Arch)); err != nil {
		return fmt.Errorf("%s not found: install the %s package", b.binaryFor(s.Arch), arches[cmp.Or(s.Arch, "amd64")].pkg)
	}
	if p := qmpPath(s.RunDir); len(p) > maxSocketPath {
		return fmt.Errorf("VM %s: socket path %s is %d bytes, over the %d-byte unix socket limit: use a shorter root dir",
			s.ID, p, len(p), maxSocketPath)
	}
	for i, n := range s.NICs {
		switch {
		case n.MAC == "":
			return fmt.Errorf("VM %s NIC %d: no MAC", s.ID, i)
		case tapByName && n.TapName == "":
			return fmt.Errorf("VM %s NIC %d: no TAP name", s.ID, i)
		case !tapByName && len(n.Files) == 0:
			return fmt.Errorf("VM %s NIC %d: no open TAP queue fds", s.ID, i)
		}
	}
	return nil
}
