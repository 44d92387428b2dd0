package cloudhv

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// minVersion is the oldest Cloud Hypervisor this backend drives (its API and snapshot format).
const minVersion = 51

// limits are CH's numbers (virtio rings are powers of two up to 32768; PCI segment 0 has 32
// slots, shared with disks, rng, balloon, watchdog, console and vsock).
var limits = hypervisor.Limits{
	MinMemory:     64 << 20,
	MaxNICs:       16,
	NetQueueSize:  hypervisor.SizeRange{Min: 64, Max: 32768},
	DiskQueueSize: hypervisor.SizeRange{Min: 4, Max: 32768},
	MaxSerialLen:  20, // VIRTIO_BLK_ID_BYTES
}

// sunPathMax is the longest unix socket path (sockaddr_un.sun_path minus the NUL).
const sunPathMax = 107

// Available implements hypervisor.Backend: the binary exists and is new enough.
func (b *Backend) Available() error {
	path, err := exec.LookPath(b.binary)
	if err != nil {
		return fmt.Errorf("%s not found: install Cloud Hypervisor v%d or newer, or set ch_binary in the config", b.binary, minVersion)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s --version: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	major, ok := parseVersion(string(out))
	if !ok {
		return fmt.Errorf("%s --version printed %q: not a Cloud Hypervisor version", path, strings.TrimSpace(string(out)))
	}
	if major < minVersion {
		return fmt.Errorf("%s is Cloud Hypervisor v%d, too old: v%d or newer is needed", path, major, minVersion)
	}
	return nil
}

var versionRE = regexp.MustCompile(`\bv?(\d+)\.\d+`)

// parseVersion reads the major version from "cloud-hypervisor v51.0.0" (or "… 51.0").
func parseVersion(s string) (int, bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// validate checks spec against CH's capabilities, then what only a launch needs. debug is
// set for DebugCommand, which names TAPs and needs no binary.
func (b *Backend) validate(s hypervisor.VMSpec, debug bool) error {
	if err := s.Validate(b.Capabilities(), Name); err != nil {
		return err
	}
	if s.Arch != "" && s.Arch != runtime.GOARCH {
		return fmt.Errorf("VM %s: cloud-hypervisor runs only %s guests on this host (no emulation): use --hypervisor qemu for %s", s.ID, runtime.GOARCH, s.Arch)
	}
	if !debug {
		if _, err := exec.LookPath(b.binary); err != nil {
			return fmt.Errorf("%s not found: install Cloud Hypervisor v%d or newer, or set ch_binary in the config", b.binary, minVersion)
		}
	}
	if s.Boot.Firmware != "" && !fileExists(s.Boot.Firmware) {
		return fmt.Errorf("VM %s: UEFI firmware %s not found: install CLOUDHV.fd there or set ch_firmware in the config", s.ID, s.Boot.Firmware)
	}
	for _, p := range []string{apiPath(s.RunDir), consolePath(s.RunDir), serialPath(s.RunDir), vsockPath(s.RunDir)} {
		if len(p) > sunPathMax {
			return fmt.Errorf("VM %s: socket path %s is longer than %d bytes: use a shorter run_dir", s.ID, p, sunPathMax)
		}
	}
	for i, n := range s.NICs {
		if n.MAC == "" {
			return fmt.Errorf("VM %s NIC %d has no MAC address", s.ID, i)
		}
		if (debug || len(n.Files) == 0) && n.TapName == "" {
			return fmt.Errorf("VM %s NIC %d has neither TAP fds nor a TAP name", s.ID, i)
		}
		if strings.ContainsAny(n.TapName, ",=[] ") {
			return fmt.Errorf("VM %s NIC %d: TAP name %q cannot be passed to cloud-hypervisor", s.ID, i, n.TapName)
		}
	}
	// CH's option parser splits values on commas: a path holding one cannot be expressed.
	for _, d := range s.Disks {
		if strings.ContainsAny(d.Path, ",") || strings.ContainsAny(d.Serial, ",=") {
			return fmt.Errorf("VM %s: disk %s (serial %q) cannot be passed to cloud-hypervisor: no commas in disk paths or serials", s.ID, d.Path, d.Serial)
		}
	}
	return nil
}
