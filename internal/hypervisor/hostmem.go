package hypervisor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// HostMemTotal is the host's RAM in bytes (MemTotal), 0 when unknown. Backends size the
// address space a cold boot reserves for memory growth on clone by it.
func HostMemTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// KSMDir is where the kernel exposes same-page merging (KSM) controls.
const KSMDir = "/sys/kernel/mm/ksm"

// MarkMergeable makes this process and every process it starts from now on — hypervisors and
// their console relays, across exec — mergeable as a whole by KSM (PR_SET_MEMORY_MERGE, Linux
// 6.4+). Marking a process is all it takes: QEMU itself only marks guest RAM, not its heap
// or the kernel copy a cold-booted VM keeps for a reboot, which are alike in many VMs.
func MarkMergeable() error {
	if err := unix.Prctl(unix.PR_SET_MEMORY_MERGE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("memory_merge: mark hypervisors mergeable: %w (needs Linux 6.4 or later: set memory_merge to false)", err)
	}
	return nil
}

// KSMRunning reports whether ksmd merges pages (<dir>/run is 1).
func KSMRunning(dir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dir, "run"))
	if err != nil {
		return false, fmt.Errorf("read KSM state: %w", err)
	}
	return strings.TrimSpace(string(data)) == "1", nil
}
