package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// smallFS mounts a fresh ext4 filesystem of size MiB from a loop file and returns its mount point.
func smallFS(t *testing.T, mib int) string {
	t.Helper()
	harness.Require(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"truncate", "-s", fmt.Sprintf("%dM", mib), img},
		{"mkfs.ext4", "-q", "-m", "0", img},
		{"mount", "-o", "loop", img, mnt},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Skipf("cannot make a loop filesystem (%s): %v %s", strings.Join(c, " "), err, out)
		}
	}
	t.Cleanup(func() {
		harness.KillProcessesMatching(mnt)
		time.Sleep(200 * time.Millisecond)
		_ = exec.Command("umount", "-l", mnt).Run()
	})
	return mnt
}

// fillUntilFull runs args(i) for i = 0, 1, … until one fails; that failure must say "no space
// left", and the command must leave nothing behind (the check compares the state before/after).
func fillUntilFull(t *testing.T, env *harness.Env, what string, max int, args func(i int) []string) int {
	t.Helper()
	for i := range max {
		before := stateOf(t, env)
		r := env.Run(args(i)...)
		if r.Err == nil {
			continue
		}
		if !strings.Contains(strings.ToLower(lastLine(r.Stderr)), "no space left") {
			t.Fatalf("%s %d failed without saying no space left:\n%s", what, i, r.Stderr)
		}
		if after := stateOf(t, env); after != before {
			t.Fatalf("failed %s left something behind:\nbefore: %s\nafter:  %s", what, before, after)
		}
		t.Logf("%s: %d succeeded before the disk was full", what, i)
		return i
	}
	t.Fatalf("%s never ran out of space in %d tries", what, max)
	return 0
}

// stateOf summarises what exists: VM and snapshot records, run dirs, snapshot data and work dirs.
func stateOf(t *testing.T, env *harness.Env) string {
	t.Helper()
	var parts []string
	for _, vm := range listVMs(t, env) {
		parts = append(parts, "vm:"+vm.Name+":"+vm.State)
	}
	parts = append(parts, fmt.Sprintf("snapshots:%v", len(snapshotIDs(t, env))))
	for _, pat := range []string{filepath.Join(env.RunDir, "*"), filepath.Join(env.Root, "snapshot", "data", "*"),
		filepath.Join(env.Root, "snapshot", "staging", "*"), filepath.Join(env.Root, "*", "temp", "*")} {
		m, _ := filepath.Glob(pat)
		parts = append(parts, fmt.Sprintf("%s:%d", filepath.Base(filepath.Dir(pat)), len(m)))
	}
	return strings.Join(parts, " ")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// The root and run dirs on a small filesystem: snapshots, clones and creates until it is full.
func TestFullDisk(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	env.MoveState(smallFS(t, envInt("COCOON_FULLDISK_MIB", 400)))
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", bootTimeout)

	fillUntilFull(t, env, "snapshot save", 100, func(i int) []string {
		return []string{"snapshot", "save", "--name", fmt.Sprintf("s%d", i), "src"}
	})
	// Free one snapshot so a clone has a source and some room, then fill with clones.
	env.MustRun("snapshot", "rm", "s1")
	fillUntilFull(t, env, "vm clone", 100, func(i int) []string {
		return []string{"vm", "clone", "--name", fmt.Sprintf("c%d", i), "s0"}
	})
	fillUntilFull(t, env, "vm create", 200, func(i int) []string {
		return []string{"vm", "create", "--name", fmt.Sprintf("v%d", i), "--nics", "0", "--storage", "20G", ref}
	})

	// Free space: remove every clone, created VM and snapshot but s0; everything works again.
	for _, vm := range listVMs(t, env) {
		if vm.Name != "src" {
			env.MustRun("vm", "rm", "--force", vm.Name)
		}
	}
	for _, name := range snapshotNames(t, env) {
		if name != "s0" {
			env.MustRun("snapshot", "rm", name)
		}
	}
	env.MustRun("gc")
	env.MustRun("snapshot", "save", "--name", "again", "src")
	env.MustRun("vm", "clone", "--name", "again", "again")
	env.MustRun("vm", "create", "--name", "fresh", "--nics", "0", ref)
	if vm := env.Inspect("again"); vm.State != "running" {
		t.Fatalf("clone after freeing space is %s", vm.State)
	}
}
