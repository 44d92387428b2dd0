package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// sysctlConf is the file under SysctlDir where --fix persists its sysctls.
const sysctlConf = "99-cocoon.conf"

func sysctlPath(o *Options, key string) string {
	return filepath.Join(o.ProcSys, strings.ReplaceAll(key, ".", "/"))
}

func readSysctl(o *Options, key string) (int, error) {
	data, err := os.ReadFile(sysctlPath(o, key))
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a number", key, strings.TrimSpace(string(data)))
	}
	return n, nil
}

func sysctlAtLeast(key string, want int, bad Status, why string) func(context.Context, *Options) Result {
	return func(_ context.Context, o *Options) Result {
		n, err := readSysctl(o, key)
		if err != nil {
			return Result{Status: bad, Detail: err.Error()}
		}
		if n < want {
			return Result{Status: bad, Detail: fmt.Sprintf("%s = %d, want >= %d: %s", key, n, want, why),
				Hint: fmt.Sprintf("cocoon doctor --fix (sysctl -w %s=%d, persisted in %s)", key, want, filepath.Join(o.SysctlDir, sysctlConf))}
		}
		return Result{Status: Pass, Detail: fmt.Sprintf("%s = %d", key, n)}
	}
}

// setSysctl sets key now and persists it in SysctlDir, so it survives a reboot.
func setSysctl(key string, val int) func(*Options) error {
	return func(o *Options) error {
		if err := os.WriteFile(sysctlPath(o, key), []byte(strconv.Itoa(val)+"\n"), 0o644); err != nil {
			return fmt.Errorf("set %s: %w", key, err)
		}
		return persistSysctl(o, key, val)
	}
}

// persistSysctl writes key = val into SysctlDir/99-cocoon.conf, replacing an earlier line
// for key and keeping the others.
func persistSysctl(o *Options, key string, val int) error {
	p := filepath.Join(o.SysctlDir, sysctlConf)
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	var lines []string
	for l := range strings.SplitSeq(strings.TrimRight(string(data), "\n"), "\n") {
		if k, _, ok := strings.Cut(l, "="); l == "" || ok && strings.TrimSpace(k) == key {
			continue
		}
		lines = append(lines, l)
	}
	if len(lines) == 0 {
		lines = append(lines, "# Written by cocoon doctor --fix.")
	}
	lines = append(lines, fmt.Sprintf("%s = %d", key, val))
	if err := os.MkdirAll(o.SysctlDir, 0o755); err != nil {
		return err
	}
	return writeAtomic(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

func writeAtomic(p string, data []byte, mode os.FileMode) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func checkDir(p string) func(context.Context, *Options) Result {
	return func(context.Context, *Options) Result {
		st, err := os.Stat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return Result{Status: Warn, Detail: p + " does not exist yet (cocoon creates it on first use)", Hint: "cocoon doctor --fix creates it now"}
		case err != nil:
			return Result{Status: Fail, Detail: err.Error()}
		case !st.IsDir():
			return Result{Status: Fail, Detail: p + " is not a directory", Hint: "move it away"}
		case st.Mode().Perm()&0o002 != 0 && st.Mode()&os.ModeSticky == 0:
			return Result{Status: Warn, Detail: fmt.Sprintf("%s is world-writable (mode %04o)", p, st.Mode().Perm()), Hint: "cocoon doctor --fix removes the write bit for others"}
		}
		return Result{Status: Pass, Detail: fmt.Sprintf("%s (mode %04o)", p, st.Mode().Perm())}
	}
}

func fixDir(p string) func(*Options) error {
	return func(*Options) error {
		st, err := os.Stat(p)
		if err == nil && st.IsDir() {
			return os.Chmod(p, st.Mode().Perm()&^0o002)
		}
		return os.MkdirAll(p, 0o750)
	}
}

// existing is p or its nearest existing ancestor: what a not-yet-created dir will live on.
func existing(p string) string {
	for {
		if _, err := os.Stat(p); err == nil || p == "/" || p == "." {
			return p
		}
		p = filepath.Dir(p)
	}
}

func checkMemoryFS(_ context.Context, o *Options) Result {
	p := existing(o.MemoryDir)
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return Result{Status: Warn, Detail: fmt.Sprintf("statfs %s: %v", p, err)}
	}
	switch st.Type {
	case unix.TMPFS_MAGIC:
		return Result{Status: Pass, Detail: o.MemoryDir + " is on tmpfs"}
	case unix.HUGETLBFS_MAGIC:
		return Result{Status: Pass, Detail: o.MemoryDir + " is on hugetlbfs"}
	}
	return Result{Status: Warn, Detail: o.MemoryDir + " is not on tmpfs: guest RAM files go through the disk",
		Hint: "set memory_dir to a directory under /dev/shm"}
}

func checkFree(p string) func(context.Context, *Options) Result {
	return func(context.Context, *Options) Result {
		on := existing(p)
		var st unix.Statfs_t
		if err := unix.Statfs(on, &st); err != nil {
			return Result{Status: Warn, Detail: fmt.Sprintf("statfs %s: %v", on, err)}
		}
		free := int64(st.Bavail) * st.Bsize
		d := fmt.Sprintf("%.1f GiB free on %s", float64(free)/(1<<30), on)
		switch {
		case free < 1<<30:
			return Result{Status: Fail, Detail: d, Hint: "free space: each VM needs room for its COW disk's writes"}
		case free < 20<<30:
			return Result{Status: Warn, Detail: d, Hint: "images, COW disks and snapshots need room"}
		}
		return Result{Status: Pass, Detail: d}
	}
}

// writeConflist writes 10-cocoon.conflist: a bridge (cni0) with NAT and host-local IPAM over
// o.Subnet, gateway .1, as the original's doctor does.
func writeConflist(o *Options) error {
	ip, subnet, err := net.ParseCIDR(o.Subnet)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("--subnet %q: want an IPv4 CIDR such as 10.88.0.0/16", o.Subnet)
	}
	gw := subnet.IP.To4()
	gw = net.IPv4(gw[0], gw[1], gw[2], gw[3]+1)
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "cocoon",
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
			"ipam": map[string]any{
				"type":   "host-local",
				"ranges": [][]map[string]string{{{"subnet": subnet.String(), "gateway": gw.String()}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.CNIConfDir, 0o755); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(o.CNIConfDir, "10-cocoon.conflist"), append(data, '\n'), 0o644)
}

// checkMemoryMerge: with memory_merge set, the kernel must support per-process KSM and ksmd
// must run, or VMs share no pages.
func checkMemoryMerge(_ context.Context, o *Options) Result {
	if !o.MemoryMerge {
		return Result{Status: Pass, Detail: "off (memory_merge: false): VMs share no memory pages"}
	}
	if _, err := unix.PrctlRetInt(unix.PR_GET_MEMORY_MERGE, 0, 0, 0, 0); err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("memory_merge is set but this kernel has no per-process KSM (%v)", err),
			Hint: "needs Linux 6.4 or later: set memory_merge to false"}
	}
	run, err := os.ReadFile(filepath.Join(o.KSMDir, "run"))
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("memory_merge is set but KSM is missing: %v", err), Hint: "a kernel built with CONFIG_KSM is needed: set memory_merge to false"}
	}
	if strings.TrimSpace(string(run)) != "1" {
		return Result{Status: Warn, Detail: "memory_merge is set but KSM is not running: VMs share no pages",
			Hint: "cocoon doctor --fix, or echo 1 > " + filepath.Join(o.KSMDir, "run")}
	}
	return Result{Status: Pass, Detail: "on: hypervisors are mergeable and ksmd runs (--fix does not persist it across reboots)"}
}

func startKSM(o *Options) error {
	return os.WriteFile(filepath.Join(o.KSMDir, "run"), []byte("1\n"), 0o644)
}
