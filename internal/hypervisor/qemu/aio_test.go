package qemu

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// The probe picks io_uring where this host's QEMU and kernel can use it, threads otherwise,
// and the argv never asks for native AIO (which draws on fs.aio-max-nr).
func TestAIOProbeAndArgv(t *testing.T) {
	if mode, reason := probeAIO("/nonexistent/qemu-system-x86_64"); mode != aioThreads || reason == "" {
		t.Errorf("missing binary: %q (%q), want threads with a reason", mode, reason)
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	want := aioIOURing
	if data, err := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); err == nil && strings.TrimSpace(string(data)) == "2" {
		want = aioThreads
	}
	b := New(Options{})
	if got := b.aioMode(); got != want {
		t.Fatalf("aio mode %q, want %q on this host", got, want)
	}
	s := baseSpec()
	s.Disks = []hypervisor.Disk{{Path: "/run/vm/cow.raw", Format: hypervisor.FormatRaw, DirectIO: true}}
	cmd, err := b.DebugCommand(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cmd, "aio="+want) || strings.Contains(cmd, "aio=native") {
		t.Errorf("argv does not use aio=%s:\n%s", want, cmd)
	}
}

// A probe's answer is kept in the cache dir and reused while the binary and kernel are the
// same; a record for another binary or kernel is probed again and replaced.
func TestAIOProbeCache(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	b := New(Options{CacheDir: dir})
	probed := b.aioMode()
	key := aioProbeKey(b.binary)
	if mode, _, ok := b.cachedAIO(key); !ok || mode != probed {
		t.Fatalf("cache after probe: %q %v, want %q", mode, ok, probed)
	}
	// A planted answer with the current key is believed: no probe runs.
	other := map[string]string{aioIOURing: aioThreads, aioThreads: aioIOURing}[probed]
	b.storeAIO(key, other, "planted")
	if got := New(Options{CacheDir: dir}).aioMode(); got != other {
		t.Fatalf("aio mode %q, want the cached %q", got, other)
	}
	// A stale key (an upgraded QEMU, a new boot) is probed again.
	b.storeAIO(key+"-old", other, "stale")
	if got := New(Options{CacheDir: dir}).aioMode(); got != probed {
		t.Fatalf("aio mode %q after a stale cache, want the probed %q", got, probed)
	}
	if mode, _, ok := b.cachedAIO(key); !ok || mode != probed {
		t.Fatalf("stale cache not replaced: %q %v", mode, ok)
	}
}
