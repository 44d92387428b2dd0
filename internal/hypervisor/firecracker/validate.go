package firecracker

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// maxSocketPath is the longest unix socket path (sun_path holds 108 bytes with its NUL).
const maxSocketPath = 107

// instanceID is what FC accepts for --id: 1 to 64 alphanumerics and hyphens.
var instanceID = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)

// validate checks spec against what Firecracker accepts, before anything is launched. debug is
// set for DebugCommand, which needs no binary.
func (b *Backend) validate(s hypervisor.VMSpec, debug bool) error {
	if err := s.Validate(b.Capabilities(), Name); err != nil {
		return err
	}
	switch {
	case s.CPUs > maxVCPUs || s.CPUs > 1 && s.CPUs%2 != 0:
		return fmt.Errorf("VM %s: %d vCPUs: Firecracker takes 1 or an even number up to %d", s.ID, s.CPUs, maxVCPUs)
	case !instanceID.MatchString(s.ID):
		return fmt.Errorf("VM %s: Firecracker instance ids are 1-64 letters, digits and hyphens", s.ID)
	case s.Arch != "" && s.Arch != "amd64":
		return fmt.Errorf("VM %s: the Firecracker backend runs amd64 guests only, not %s", s.ID, s.Arch)
	}
	if err := checkELF(s.Boot.Kernel); err != nil {
		return fmt.Errorf("VM %s: %w", s.ID, err)
	}
	for i, n := range s.NICs {
		if n.TapName == "" {
			return fmt.Errorf("VM %s NIC %d: Firecracker opens TAPs by name and this one has none", s.ID, i)
		}
	}
	for _, p := range []string{apiPath(s.RunDir), consolePath(s.RunDir), vsockPath(s.RunDir)} {
		if len(p) > maxSocketPath {
			return fmt.Errorf("VM %s: socket path %s is %d bytes, over the %d-byte unix socket limit: use a shorter run dir", s.ID, p, len(p), maxSocketPath)
		}
	}
	if !debug {
		if _, err := exec.LookPath(b.binary); err != nil {
			return fmt.Errorf("firecracker binary %s not found: install Firecracker or set fc_binary", b.binary)
		}
	}
	return nil
}

// checkELF refuses a kernel Firecracker cannot load: it boots only uncompressed ELF images.
// A missing kernel is left to Firecracker, whose refusal names it and the log.
func checkELF(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	head := make([]byte, 4)
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, []byte("\x7fELF")) {
		return fmt.Errorf("kernel %s is not an ELF image: FC requires uncompressed ELF kernel (vmlinux)", path)
	}
	return nil
}
