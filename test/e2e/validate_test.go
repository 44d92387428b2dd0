package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// A setting the backend refuses is refused by create itself, before anything is stored:
// no record in state error, no run or log dirs.
func TestBackendLimitsRefusedAtCreate(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustFail("NIC queue size (--queue-size) 64 is not supported by qemu", "vm", "create", "--queue-size", "64", "--name", "q64", ref)
	env.MustFail("--queue-size) 100 is not supported", "vm", "run", "--queue-size", "100", ref)
	env.MustFail("--disk-queue-size) 2048 is not supported", "vm", "create", "--nics", "0", "--disk-queue-size", "2048", ref)
	env.MustFail("at most 8", "vm", "create", "--nics", "9", ref)
	if out := env.MustRun("vm", "list"); !strings.Contains(out, "No VMs found.") {
		t.Fatalf("a refused create stored a VM:\n%s", out)
	}
	for _, dir := range []string{env.RunDir, env.LogDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("%s not empty after refused creates: %v", dir, entries)
		}
	}
}

// `vm debug` without --cow puts the recipe's files in the current directory, with absolute
// paths, and picks io_uring (never native AIO) for the disks on this host.
func TestDebugWithoutCOW(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	dir := t.TempDir()
	c := env.Cmd(t.Context(), "vm", "debug", "--nics", "0", "--name", "tiny", ref)
	c.Dir = dir
	r := env.RunCmd(c)
	if r.Err != nil {
		t.Fatalf("vm debug without --cow: %v\n%s", r.Err, r.Stderr)
	}
	if !strings.Contains(r.Stdout, "file="+dir+"/cow-tiny.raw,") || !strings.Contains(r.Stdout, "truncate -s") {
		t.Errorf("recipe does not put the COW disk in %s:\n%s", dir, r.Stdout)
	}
	want := "aio=io_uring"
	if data, _ := os.ReadFile("/proc/sys/kernel/io_uring_disabled"); strings.TrimSpace(string(data)) == "2" {
		want = "aio=threads"
	}
	if !strings.Contains(r.Stdout, want) || strings.Contains(r.Stdout, "aio=native") {
		t.Errorf("recipe does not use %s:\n%s", want, r.Stdout)
	}
}
