package hypervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// Finder is implemented by backends that can find a VM's hypervisor without a recorded PID
// (from their PID file). The engine uses it to see a process that a command launched but
// crashed before recording, so such a VM is listed truthfully and rm can stop it.
type Finder interface {
	// Find returns the VM's live, ownership-checked hypervisor process, if there is one.
	Find(vm VMRef) (Process, bool)
}

// FindProcess is Finder's work for any backend: the process named by p's PID file, when it is
// alive and really is this VM's hypervisor (binary and control socket on its command line).
// A command killed between spawning the hypervisor and writing the PID file leaves no PID
// file; launched says the launch's earlier files exist, and then the process table is
// searched for the control socket path.
func FindProcess(vm VMRef, p Plan, launched bool) (Process, bool) {
	ref := VMRef{ID: vm.ID, RunDir: vm.RunDir}
	if _, err := os.Stat(p.PIDFile); err != nil {
		if !launched {
			return Process{}, false // no launch since the last clean stop
		}
		if ref.PID = processWith(p.Control); ref.PID == 0 {
			return Process{}, false
		}
	}
	o := p.Owner()
	h, err := Open(ref, o)
	if err != nil {
		return Process{}, false
	}
	defer h.Close()
	start, err := StartTime(h.PID)
	if err != nil {
		return Process{}, false
	}
	return Process{PID: h.PID, StartTime: start, Binary: o.Binary}, true
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
