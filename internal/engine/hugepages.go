package engine

import (
	"bufio"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

const hugePageSize = 2 << 20

// hugePageDir returns a directory on a 2 MiB hugetlbfs mount for the VM's RAM file when the
// host has reserved enough free huge pages (/proc/sys/vm/nr_hugepages), else "".
func hugePageDir(vmID string, memory int64) string {
	if memory%hugePageSize != 0 {
		return ""
	}
	free, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		return ""
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(free)), 10, 64)
	if err != nil || n*hugePageSize < memory {
		return ""
	}
	mount := hugetlbfsMount()
	if mount == "" {
		slog.Warn("huge pages are reserved but no 2 MiB hugetlbfs is mounted: using normal pages (mount -t hugetlbfs none /dev/hugepages)")
		return ""
	}
	return filepath.Join(mount, "cocoon", vmID)
}

// hugetlbfsMount finds a hugetlbfs mount with 2 MiB pages.
func hugetlbfsMount() string {
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || fields[2] != "hugetlbfs" {
			continue
		}
		opts := fields[3]
		if !strings.Contains(opts, "pagesize=") || strings.Contains(opts, "pagesize=2M") {
			return fields[1]
		}
	}
	return ""
}

// hugePageRoot is where a VM's RAM file would be on hugetlbfs ("" without a mount), for cleanup.
func hugePageRoot(vmID string) string {
	if m := hugetlbfsMount(); m != "" {
		return filepath.Join(m, "cocoon", vmID)
	}
	return ""
}
