package firecracker

import (
	"os"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

var _ hypervisor.Finder = (*Backend)(nil)

// Find implements hypervisor.Finder. The drive links are made before FC is spawned, so with
// them (or the API socket) a launch began since the last clean stop.
func (b *Backend) Find(vm hypervisor.VMRef) (hypervisor.Process, bool) {
	launched := exists(apiPath(vm.RunDir)) || exists(diskLinkDir(vm.RunDir))
	return hypervisor.FindProcess(vm, b.plan(vm.RunDir, ""), launched)
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }
