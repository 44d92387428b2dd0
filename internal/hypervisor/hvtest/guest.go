// Package hvtest gives hypervisor and console tests a real guest to boot: Debian's cloud
// kernel and a busybox initramfs whose /init reports its devices on the serial console, offers
// a shell, and powers off on the ACPI power button. Everything is cached between runs under
// CacheDir, keyed by content.
package hvtest

import (
	"context"
	"crypto/sha256"
	"debug/elf"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/lock"
)

// Console markers printed by the guest's /init.
const (
	Ready       = "HVTEST-READY"
	PowerButton = "HVTEST-POWERBUTTON"
	Prompt      = "hvtest# "
)

// CacheDir keeps the unpacked kernel and built initramfs between test runs.
const CacheDir = "/tmp/cocoon-test-kernel"

const (
	kernelMeta = "linux-image-cloud-amd64"
	busybox    = "/bin/busybox" // from busybox-static
)

var modules = []string{"virtio_pci", "virtio_blk", "virtio_net", "virtio_balloon", "virtio_rng", "button", "evdev"}

//go:embed init.sh
var initScript []byte

// Guest is a bootable kernel and initramfs.
type Guest struct {
	Kernel, Initrd string
}

// Cmdline is the kernel command line for a guest expecting the given device counts; /init
// waits for them to be probed before it reports.
func Cmdline(disks, nics int) string {
	return fmt.Sprintf("console=ttyS0 loglevel=4 no_timer_check hvtest.disks=%d hvtest.nics=%d", disks, nics)
}

// Build returns the cached guest, building it on first use. Tests skip when the host lacks
// the tools it needs.
func Build(t testing.TB) Guest {
	t.Helper()
	for _, tool := range []string{"dpkg-deb", "apt-get", "depmod", "modprobe", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s binary not found (needed to build the test guest)", tool)
		}
	}
	if !isStatic(busybox) {
		t.Skipf("%s is missing or not static: install busybox-static", busybox)
	}
	l := lock.New(filepath.Join(CacheDir, ".lock"))
	if err := l.Lock(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()

	root := filepath.Join(CacheDir, "kernel")
	kver, err := kernelVersion(root)
	if err != nil {
		if kver, err = unpackKernel(root); err != nil {
			t.Fatalf("prepare test kernel: %v", err)
		}
	}
	g := Guest{Kernel: filepath.Join(root, "boot", "vmlinuz-"+kver)}
	g.Initrd, err = buildInitramfs(root, kver)
	if err != nil {
		t.Fatalf("build test initramfs: %v", err)
	}
	return g
}

func isStatic(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

func kernelVersion(root string) (string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "lib", "modules"))
	if err != nil || len(entries) != 1 {
		return "", fmt.Errorf("no single kernel under %s", root)
	}
	kver := entries[0].Name()
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+kver)); err != nil {
		return "", err
	}
	return kver, nil
}

// unpackKernel downloads Debian's cloud kernel package and unpacks it (no install).
func unpackKernel(root string) (string, error) {
	out, err := exec.Command("apt-cache", "depends", kernelMeta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", kernelMeta, err)
	}
	var pkg string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("%s has no kernel dependency in apt's lists (run apt-get update)", kernelMeta)
	}
	debs := filepath.Join(CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", err
	}
	if err := run(debs, "apt-get", "download", pkg); err != nil {
		return "", err
	}
	matches, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
	if len(matches) == 0 {
		return "", fmt.Errorf("apt-get download %s left no .deb in %s", pkg, debs)
	}
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := run("", "dpkg-deb", "-x", matches[0], root); err != nil {
		return "", err
	}
	kver, err := kernelVersion(root)
	if err != nil {
		return "", err
	}
	return kver, run("", "depmod", "-b", root, kver)
}

// buildInitramfs writes an uncompressed newc cpio with busybox, the modules /init loads
// (with their dependencies) and /init itself.
func buildInitramfs(root, kver string) (string, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	for _, part := range [][]byte{initScript, []byte(kver), []byte(strings.Join(modules, ",")), bb} {
		sum.Write(part)
		sum.Write([]byte{0})
	}
	out := filepath.Join(CacheDir, "initramfs-"+hex.EncodeToString(sum.Sum(nil))[:16]+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}

	stage, err := os.MkdirTemp(CacheDir, "stage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)
	if err := os.MkdirAll(filepath.Join(stage, "bin"), 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stage, "bin", "busybox"), bb, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(stage, "init"), initScript, 0o755); err != nil {
		return "", err
	}
	for _, m := range modules {
		deps, err := exec.Command("modprobe", "-d", root, "-S", kver, "--show-depends", m).Output()
		if err != nil {
			return "", fmt.Errorf("modprobe --show-depends %s: %w", m, err)
		}
		for _, line := range strings.Split(string(deps), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "insmod" {
				continue // builtin
			}
			if err := run("", "install", "-D", "-m", "0644", f[1], filepath.Join(stage, strings.TrimPrefix(f[1], root))); err != nil {
				return "", err
			}
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		src := filepath.Join(root, "lib", "modules", kver, f)
		if err := run("", "install", "-D", "-m", "0644", src, filepath.Join(stage, "lib", "modules", kver, f)); err != nil {
			return "", err
		}
	}
	if err := run("", "depmod", "-b", stage, kver); err != nil {
		return "", err
	}
	tmp := out + ".tmp"
	cmd := exec.Command("sh", "-c", `find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet > "$0"`, tmp)
	cmd.Dir = stage
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cpio: %v: %s", err, b)
	}
	return out, os.Rename(tmp, out)
}

func run(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
