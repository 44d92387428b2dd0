package qemu

import (
	"os"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Find implements hypervisor.Finder. The layout file is written before QEMU is spawned, so
// with it (or the QMP socket) a launch began since the last clean stop.
func (b *Backend) Find(vm hypervisor.VMRef) (hypervisor.Process, bool) {
	launched := exists(qmpPath(vm.RunDir)) || exists(layoutPath(vm.RunDir))
	if !launched && !exists(pidPath(vm.RunDir)) {
		return hypervisor.Process{}, false // the common case at scale: a VM cleanly stopped
	}
	return hypervisor.FindProcess(vm, b.planOf(vm.RunDir), launched)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
