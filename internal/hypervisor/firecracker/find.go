package firecracker

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

var _ hypervisor.Finder = (*Backend)(nil)

// Find implements hypervisor.Finder: the process named by the VM's PID file, when it is alive
// and really is this VM's Firecracker (binary and API socket path on its command line). A
// command killed between spawning FC and writing the PID file leaves no PID file but the
// drive links made before the spawn: then the process table is searched for the socket path.
func (b *Backend) Find(vm hypervisor.VMRef) (hypervisor.Process, bool) {
	ref := hypervisor.VMRef{ID: vm.ID, RunDir: vm.RunDir}
	if _, err := os.Stat(pidPath(vm.RunDir)); err != nil {
		if !exists(apiPath(vm.RunDir)) && !exists(diskLinkDir(vm.RunDir)) {
			return hypervisor.Process{}, false // no launch since the last clean stop
		}
		if ref.PID = processWith(apiPath(vm.RunDir)); ref.PID == 0 {
			return hypervisor.Process{}, false
		}
	}
	h, err := hypervisor.Open(ref, b.plan(vm.RunDir, "").Owner())
	if err != nil {
		return hypervisor.Process{}, false
	}
	defer h.Close()
	start, err := hypervisor.StartTime(h.PID)
	if err != nil {
		return hypervisor.Process{}, false
	}
	return hypervisor.Process{PID: h.PID, StartTime: start, Binary: b.binary}, true
}

// processWith returns the PID of a process with an argument containing marker, or 0. Open
// checks the binary and the marker again, through a pidfd.
func processWith(marker string) int {
	entries, _ := os.ReadDir("/proc")
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil {
			continue
		}
		if cmd, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline")); err == nil && bytes.Contains(cmd, []byte(marker)) {
			return pid
		}
	}
	return 0
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }
