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
