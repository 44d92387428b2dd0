package doctor

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// aioMaxNr is the fs.aio-max-nr doctor asks for: QEMU opens native AIO contexts for every
// O_DIRECT disk of every VM, and the kernel's default 65536 runs out with a few dozen VMs.
const aioMaxNr = 1048576

func checks(o *Options) []check {
	cs := []check{
		{name: "kvm", run: checkKVM},
		{name: "platforms", run: checkPlatforms},
		{name: "qemu", run: binary(o.QEMUBinary, true, "apt-get install qemu-system-x86", "--version")},
		{name: "qemu-img", run: binary("qemu-img", true, "apt-get install qemu-utils", "--version")},
		{name: "mkfs.erofs", run: checkMkfsErofs},
		{name: "mkfs.ext4", run: binary("mkfs.ext4", true, "apt-get install e2fsprogs", "-V")},
		{name: "firmware OVMF", run: checkFiles("cloud images (UEFI) need it: apt-get install ovmf, or set firmware_code/firmware_vars", o.FirmwareCode, o.FirmwareVars)},
		{name: "firmware AAVMF", run: checkFiles("cloud images on arm64 guests (UEFI) need it: apt-get install qemu-efi-aarch64, or set firmware_code_arm64/firmware_vars_arm64", o.FirmwareCodeARM64, o.FirmwareVarsARM64)},
		{name: "firmware CLOUDHV", run: checkCloudHV},
		{name: "cni plugins", run: checkCNIPlugins},
		{name: "cni conflist", run: checkConflist, fix: writeConflist},
		{name: "sysctl net.ipv4.ip_forward", run: sysctlAtLeast("net.ipv4.ip_forward", 1, Warn, "bridge-mode VMs cannot reach beyond the host (the CNI bridge plugin with isGateway turns it on itself)"), fix: setSysctl("net.ipv4.ip_forward", 1)},
		{name: "sysctl fs.aio-max-nr", run: sysctlAtLeast("fs.aio-max-nr", aioMaxNr, Warn, "QEMU's native AIO runs out with many VMs"), fix: setSysctl("fs.aio-max-nr", aioMaxNr)},
		{name: "iptables FORWARD", run: checkForwardPolicy},
		{name: "hugepages", run: checkHugepages},
		{name: "memory merge", run: checkMemoryMerge, fix: startKSM},
	}
	for _, b := range o.Backends {
		cs = append(cs, check{name: "backend " + b.Name, run: checkBackend(b)})
	}
	for _, d := range []struct{ key, path string }{{"root_dir", o.RootDir}, {"run_dir", o.RunDir}, {"log_dir", o.LogDir}, {"memory_dir", o.MemoryDir}, {"netns dir", o.NetnsDir}} {
		cs = append(cs, check{name: "dir " + d.key, run: checkDir(d.path), fix: fixDir(d.path)})
	}
	cs = append(cs, check{name: "memory_dir filesystem", run: checkMemoryFS})
	for _, d := range []struct{ key, path string }{{"root_dir", o.RootDir}, {"run_dir", o.RunDir}} {
		cs = append(cs, check{name: "free disk " + d.key, run: checkFree(d.path)})
	}
	return cs
}

func checkKVM(_ context.Context, o *Options) Result {
	if why := o.KVMProblem(); why != "" {
		return Result{Status: Warn, Detail: "KVM unusable for stock guests (" + why + "): QEMU runs them under TCG, much slower",
			Hint: "use a host with hardware virtualisation (nested virtualisation enabled on cloud VMs)"}
	}
	return Result{Status: Pass, Detail: "/dev/kvm usable: guests run with KVM"}
}

// binary checks that name is on PATH (or a path) and reports the first line of its version.
func binary(name string, required bool, hint string, versionArgs ...string) func(context.Context, *Options) Result {
	return func(ctx context.Context, _ *Options) Result {
		p, err := exec.LookPath(name)
		if err != nil {
			st := Warn
			if required {
				st = Fail
			}
			return Result{Status: st, Detail: name + " not found", Hint: hint}
		}
		return Result{Status: Pass, Detail: p + ": " + version(ctx, p, versionArgs...)}
	}
}

// version runs bin with args and returns the first non-empty output line.
func version(ctx context.Context, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	for l := range strings.SplitSeq(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return "version unknown"
}

// checkMkfsErofs builds a tiny image (mkfs.erofs has no version flag; it prints its version
// when it runs), which also proves it works with the options image conversion uses.
func checkMkfsErofs(ctx context.Context, _ *Options) Result {
	p, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return Result{Status: Fail, Detail: "mkfs.erofs not found: OCI images cannot be converted", Hint: "apt-get install erofs-utils"}
	}
	dir, err := os.MkdirTemp("", "cocoon-doctor-")
	if err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o700); err != nil {
		return Result{Status: Fail, Detail: err.Error()}
	}
	out, err := exec.CommandContext(ctx, p, "-zlz4", filepath.Join(dir, "t.erofs"), src).CombinedOutput()
	if err != nil {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s cannot build an lz4 image: %v: %s", p, err, bytes.TrimSpace(out)), Hint: "install erofs-utils 1.5 or newer"}
	}
	return Result{Status: Pass, Detail: p + ": " + strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0]}
}

func checkFiles(hint string, paths ...string) func(context.Context, *Options) Result {
	return func(context.Context, *Options) Result {
		for _, p := range paths {
			if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
				return Result{Status: Warn, Detail: p + " not found", Hint: hint}
			}
		}
		return Result{Status: Pass, Detail: strings.Join(paths, ", ")}
	}
}

func checkCloudHV(_ context.Context, o *Options) Result {
	p := filepath.Join(o.RootDir, "firmware", "CLOUDHV.fd")
	if _, err := os.Stat(p); err != nil {
		return Result{Status: Warn, Detail: p + " not found", Hint: "optional: cloud images on cloud-hypervisor boot it (rust-hypervisor-firmware)"}
	}
	return Result{Status: Pass, Detail: p}
}

func checkCNIPlugins(_ context.Context, o *Options) Result {
	var missing []string
	for _, n := range []string{"bridge", "host-local", "loopback"} {
		st, err := os.Stat(filepath.Join(o.CNIBinDir, n))
		if err != nil || st.Mode()&0o111 == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return Result{Status: Fail, Detail: fmt.Sprintf("%s missing in %s", strings.Join(missing, ", "), o.CNIBinDir),
			Hint: "apt-get install containernetworking-plugins and link /usr/lib/cni/* there (scripts/deps.sh does), or set --cni-bin-dir"}
	}
	return Result{Status: Pass, Detail: "bridge, host-local, loopback in " + o.CNIBinDir}
}

func checkConflist(_ context.Context, o *Options) Result {
	lists, _ := filepath.Glob(filepath.Join(o.CNIConfDir, "*.conflist"))
	if len(lists) == 0 {
		return Result{Status: Fail, Detail: "no *.conflist in " + o.CNIConfDir + ": VMs with NICs cannot be created",
			Hint: "cocoon doctor --fix writes a bridge conflist (10-cocoon.conflist), or use --nics 0 / --bridge"}
	}
	names := make([]string, len(lists))
	for i, l := range lists {
		names[i] = filepath.Base(l)
	}
	return Result{Status: Pass, Detail: strings.Join(names, ", ") + " in " + o.CNIConfDir}
}

func checkForwardPolicy(ctx context.Context, _ *Options) Result {
	p, err := exec.LookPath("iptables")
	if err != nil {
		return Result{Status: Warn, Detail: "iptables not found: cannot see the FORWARD policy", Hint: "apt-get install iptables"}
	}
	out, err := exec.CommandContext(ctx, p, "-S", "FORWARD").CombinedOutput()
	if err != nil {
		return Result{Status: Warn, Detail: fmt.Sprintf("iptables -S FORWARD: %v: %s", err, bytes.TrimSpace(out))}
	}
	first := strings.SplitN(string(out), "\n", 2)[0]
	if strings.Contains(first, "DROP") || strings.Contains(first, "REJECT") {
		return Result{Status: Warn, Detail: "FORWARD policy is " + strings.TrimPrefix(first, "-P FORWARD ") + ": guest traffic leaves the host only where rules accept it",
			Hint: "iptables -A FORWARD -i <bridge> -j ACCEPT; iptables -A FORWARD -o <bridge> -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"}
	}
	return Result{Status: Pass, Detail: "FORWARD policy " + strings.TrimPrefix(first, "-P FORWARD ")}
}

func checkHugepages(_ context.Context, o *Options) Result {
	n, err := readSysctl(o, "vm.nr_hugepages")
	if err != nil {
		return Result{Status: Warn, Detail: err.Error()}
	}
	if n == 0 {
		return Result{Status: Pass, Detail: "none reserved: guest RAM lives on tmpfs (memory_dir)"}
	}
	return Result{Status: Pass, Detail: fmt.Sprintf("%d reserved: guest RAM uses hugetlbfs while they last", n)}
}

// checkBackend reports whether a hypervisor backend can run VMs here (its binary, version and
// what else it needs); a backend that cannot is optional unless it is the only one.
func checkBackend(b Backend) func(context.Context, *Options) Result {
	return func(context.Context, *Options) Result {
		if err := b.Available(); err != nil {
			return Result{Status: Warn, Detail: err.Error(), Hint: "optional: only VMs created with this hypervisor need it"}
		}
		return Result{Status: Pass, Detail: "usable"}
	}
}
