package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// With free 2 MiB huge pages reserved and hugetlbfs mounted, guest RAM lives on hugetlbfs.
func TestHugePagesBackGuestRAM(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	const nrFile = "/proc/sys/vm/nr_hugepages"
	old, err := os.ReadFile(nrFile)
	if err != nil {
		t.Skipf("no %s: kernel without huge pages", nrFile)
	}
	if strings.TrimSpace(string(old)) != "0" {
		t.Skip("huge pages already reserved on this host: not touching them")
	}
	if err := os.WriteFile(nrFile, []byte("300"), 0o644); err != nil {
		t.Skipf("cannot reserve huge pages (needs root): %v", err)
	}
	t.Cleanup(func() { _ = os.WriteFile(nrFile, old, 0o644) })
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "hugetlbfs", "-o", "pagesize=2M", "none", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount hugetlbfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })

	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "h1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("h1")
	argv, _ := os.ReadFile(filepath.Join(vm.RunDir, "cmdline"))
	if !strings.Contains(string(argv), "mem-path="+mnt) {
		t.Fatalf("guest RAM is not on hugetlbfs %s:\n%s", mnt, argv)
	}
	env.WaitConsole(vm, "COCOON-READY", bootTimeout)
	env.MustRun("vm", "rm", "--force", "h1")
	if entries, _ := os.ReadDir(filepath.Join(mnt, "cocoon")); len(entries) != 0 {
		t.Fatalf("rm left huge-page RAM files: %v", entries)
	}
}
