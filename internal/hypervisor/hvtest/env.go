package hvtest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// BootTimeout bounds every wait for the guest. It is a guard against a hung test, not a
// performance assertion: TCG on a loaded 2-core host can be very slow.
const BootTimeout = 3 * time.Minute

// RequireQEMU skips the test in -short mode (it boots a VM) and when QEMU is not installed.
func RequireQEMU(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM: skipped in -short mode")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 binary not found")
	}
}

// RandomID returns n random hex characters.
func RandomID(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// Spec is a 1-vCPU, 256 MiB direct-boot VM of g with its own run, log and memory dirs.
func Spec(t testing.TB, g Guest) hypervisor.VMSpec {
	t.Helper()
	memDir := "/dev/shm"
	if _, err := os.Stat(memDir); err != nil {
		memDir = ""
	}
	mem, err := os.MkdirTemp(memDir, "cocoon-hvtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(mem) })
	dir := t.TempDir()
	id := RandomID(12)
	return hypervisor.VMSpec{
		ID: id, Name: "hvtest-" + id, CPUs: 1, MemoryBytes: 256 << 20,
		Boot:   hypervisor.Boot{Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: Cmdline(0, 0)},
		RunDir: mkdir(t, dir, "run"), LogDir: mkdir(t, dir, "log"), MemoryDir: mem,
		Accel: "auto",
	}
}

func mkdir(t testing.TB, parent, name string) string {
	p := filepath.Join(parent, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// WaitForText polls path until it contains text and returns the file's content; it fails
// the test with the file's tail after BootTimeout.
func WaitForText(t testing.TB, path, text string) string {
	t.Helper()
	deadline := time.Now().Add(BootTimeout)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), text) {
			return string(data)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not in %s after %v; it ends with:\n%s", text, path, BootTimeout, tail(string(data), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Tap creates a persistent multi-queue TAP with vnet headers, as the network module does, and
// returns its name and one open fd per queue; both go away at cleanup.
func Tap(t testing.TB, queues int) (string, []*os.File) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating TAP devices needs root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("/dev/net/tun not available")
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: "hvt" + RandomID(8)},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_MULTI_QUEUE_DEFAULTS | netlink.TUNTAP_VNET_HDR,
		Queues:    queues,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		t.Fatalf("create tap %s: %v", tap.Name, err)
	}
	t.Cleanup(func() {
		for _, f := range tap.Fds {
			f.Close()
		}
		_ = netlink.LinkDel(tap)
	})
	if err := netlink.LinkSetUp(tap); err != nil {
		t.Fatalf("set tap %s up: %v", tap.Name, err)
	}
	return tap.Name, tap.Fds
}
