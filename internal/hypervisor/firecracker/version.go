package firecracker

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"
)

// minVersion is the oldest Firecracker whose API this backend speaks (snapshot load with
// network and vsock overrides, PUT /entropy).
var minVersion = [2]int{1, 14}

var versionRE = regexp.MustCompile(`^Firecracker v(\d+)\.(\d+)`)

// Available implements hypervisor.Backend: the binary is on PATH (or at its configured path)
// and is Firecracker minVersion or newer.
func (b *Backend) Available() error {
	path, err := exec.LookPath(b.binary)
	if err != nil {
		return fmt.Errorf("firecracker binary %s not found: install Firecracker v%d.%d or newer, or set fc_binary", b.binary, minVersion[0], minVersion[1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return fmt.Errorf("%s --version: %w", path, err)
	}
	m := versionRE.FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("%s --version printed %.60q, not \"Firecracker vX.Y.Z\": set fc_binary to a Firecracker binary", path, out)
	}
	major, _ := strconv.Atoi(string(m[1]))
	minor, _ := strconv.Atoi(string(m[2]))
	if major < minVersion[0] || major == minVersion[0] && minor < minVersion[1] {
		return fmt.Errorf("%s is Firecracker v%d.%d; v%d.%d or newer is needed: upgrade it or set fc_binary", path, major, minor, minVersion[0], minVersion[1])
	}
	return nil
}
