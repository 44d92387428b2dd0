package qemu

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Find implements hypervisor.Finder: the process named by the VM's PID file, when it is alive
// and really is this VM's QEMU (binary and QMP socket path on its command line). A command
// killed between spawning QEMU and writing the PID file leaves no PID file but the layout file
// written before the spawn: then the process table is searched for the QMP socket path.
func (b *Backend) Find(vm hypervisor.VMRef) (hypervisor.Process, bool) {
	ref := hypervisor.VMRef{ID: vm.ID, RunDir: vm.RunDir}
	if _, err := os.Stat(pidPath(vm.RunDir)); err != nil {
		if !exists(qmpPath(vm.RunDir)) && !exists(layoutPath(vm.RunDir)) {
			return hypervisor.Process{}, false // no launch since the last clean stop
		}
		if ref.PID = processWith(qmpPath(vm.RunDir)); ref.PID == 0 {
			return hypervisor.Process{}, false
		}
	}
	o := b.owner(vm.RunDir)
	h, err := hypervisor.Open(ref, o)
	if err != nil {
		return hypervisor.Process{}, false
	}
	defer h.Close()
	start, err := hypervisor.StartTime(h.PID)
	if err != nil {
		return hypervisor.Process{}, false
	}
	return hypervisor.Process{PID: h.PID, StartTime: start, Binary: o.Binary}, true // the VM's arch's binary
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

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
