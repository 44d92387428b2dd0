package hypervisor

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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
