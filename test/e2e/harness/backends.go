package harness

import (
	"os/exec"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Backend is one hypervisor the real-guest e2e scenarios run on.
type Backend struct {
	Name  string
	Flags []string // what `vm create/run` adds to choose it
}

// backends are the hypervisors whose real binaries the scenarios can drive, with the binary each
// needs and whether it needs KVM that runs stock guests.
var backends = []struct {
	Backend
	binary   string
	needsKVM bool
}{
	{Backend{"qemu", []string{"--hypervisor", "qemu"}}, "qemu-system-x86_64", false},
	{Backend{"cloud-hypervisor", []string{"--hypervisor", "cloud-hypervisor"}}, "cloud-hypervisor", true},
	{Backend{"firecracker", []string{"--fc"}}, "firecracker", true},
}

// ForEachBackend runs fn as a subtest per backend; a backend whose binary or usable KVM is
// missing here is skipped, saying which. (The contract tests run CH and FC against stand-ins
// everywhere: test/e2e/standin_*_test.go.)
func ForEachBackend(t *testing.T, fn func(t *testing.T, b Backend)) {
	for _, b := range backends {
		t.Run(b.Name, func(t *testing.T) {
			if _, err := exec.LookPath(b.binary); err != nil {
				t.Skipf("%s: binary %s not found", b.Name, b.binary)
			}
			if why := hypervisor.KVMUnusable(); b.needsKVM && why != "" {
				t.Skipf("%s: needs KVM that runs stock guests: %s", b.Name, why)
			}
			fn(t, b.Backend)
		})
	}
}
