package e2e

// Reliability: concurrent commands on one root, file permissions, recycled PIDs and a
// simulated host reboot. Counts scale with COCOON_CONCURRENCY / COCOON_RM_PARALLEL.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// runBounded runs cocoon with a deadline and returns its result without failing the test.
func runBounded(env *harness.Env, d time.Duration, args ...string) (harness.Result, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb strings.Builder
	c := env.Cmd(ctx, args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return harness.Result{Stdout: out.String(), Stderr: errb.String(), Err: err}, ctx.Err() == nil
}

// clearError: a failed command says why in one "Error: " line.
func clearError(r harness.Result) bool {
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	last := lines[len(lines)-1]
	return strings.HasPrefix(last, "Error: ") && len(last) > len("Error: ")+10
}

func TestConcurrentMixedCommands(t *testing.T) {
	env, _, ref := netEnv(t, 82)
	n := envInt("COCOON_CONCURRENCY", 20)
	env.MustRun("vm", "run", "--name", "src", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s", "src")
	// VMs that the stop/start/rm commands act on.
	for i := range n {
		if i%8 == 5 || i%8 == 6 {
			env.MustRun("vm", "create", "--name", fmt.Sprintf("pre%d", i), "--cpu", "1", "--memory", "512M", ref)
		}
	}
	cmds := make([][]string, n)
	for i := range n {
		name := fmt.Sprintf("x%d", i)
		switch i % 8 {
		case 0:
			cmds[i] = []string{"vm", "create", "--name", name, "--cpu", "1", "--memory", "512M", ref}
		case 1:
			cmds[i] = []string{"vm", "clone", "--name", name, "s"}
		case 2:
			cmds[i] = []string{"vm", "list"}
		case 3:
			cmds[i] = []string{"gc"}
		case 4:
			cmds[i] = []string{"snapshot", "save", "--name", "snap" + name, "src"}
		case 5:
			cmds[i] = []string{"vm", "start", fmt.Sprintf("pre%d", i)}
		case 6:
			cmds[i] = []string{"vm", "rm", "--force", fmt.Sprintf("pre%d", i)}
		case 7:
			cmds[i] = []string{"vm", "stop", "src"}
		}
	}
	results := make([]harness.Result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, ok := runBounded(env, 8*time.Minute, cmds[i]...)
			if !ok {
				t.Errorf("cocoon %s did not finish within 8 minutes (deadlock?)", strings.Join(cmds[i], " "))
			}
			results[i] = r
		}()
	}
	wg.Wait()
	okCount := 0
	for i, r := range results {
		switch {
		case r.Err == nil:
			okCount++
		case !clearError(r):
			t.Errorf("cocoon %s failed without a clear error: %v\n%s", strings.Join(cmds[i], " "), r.Err, r.Stderr)
		default:
			t.Logf("cocoon %s: %s", strings.Join(cmds[i], " "), strings.TrimSpace(r.Stderr))
		}
	}
	t.Logf("%d of %d concurrent commands succeeded, the others failed with a clear error", okCount, n)

	// Records: every successful create/clone exactly once, removed VMs gone, no name or IP twice.
	vms := listVMs(t, env)
	byName, ips := map[string]int{}, map[string]string{}
	for _, vm := range vms {
		byName[vm.Name]++
		for _, nic := range vm.Networks {
			if other, dup := ips[nic.IP]; dup {
				t.Errorf("IP %s given to %s and %s", nic.IP, other, vm.Name)
			}
			ips[nic.IP] = vm.Name
		}
	}
	for i, r := range results {
		name := fmt.Sprintf("x%d", i)
		switch {
		case i%8 <= 1 && r.Err == nil && byName[name] != 1:
			t.Errorf("VM %s was created but is listed %d times", name, byName[name])
		case i%8 <= 1 && r.Err != nil && byName[name] != 0:
			t.Errorf("VM %s failed to create but is listed", name)
		case i%8 == 6 && r.Err == nil && byName[fmt.Sprintf("pre%d", i)] != 0:
			t.Errorf("VM pre%d was removed but is still listed", i)
		}
	}
	for name, c := range byName {
		if c > 1 {
			t.Errorf("VM name %s listed %d times", name, c)
		}
	}
	checkIndexes(t, env)
	checkTruthful(t, env, vms)
}

func TestConcurrentForceRemove(t *testing.T) {
	env, h, ref := netEnv(t, 83)
	n := envInt("COCOON_RM_PARALLEL", 20)
	env.MustRun("vm", "run", "--name", "src", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s", "src")
	env.MustRun("vm", "rm", "--force", "src")
	for i := range n {
		env.MustRun("vm", "clone", "--name", fmt.Sprintf("r%d", i), "s")
	}
	vms := listVMs(t, env)
	if len(vms) != n {
		t.Fatalf("want %d running clones, have %d", n, len(vms))
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, vm := range vms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r, ok := runBounded(env, 5*time.Minute, "vm", "rm", "--force", vm.Name); !ok || r.Err != nil {
				t.Errorf("rm -f %s: finished=%v err=%v %s", vm.Name, ok, r.Err, r.Stderr)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d concurrent rm -f of running VMs took %s", n, time.Since(t0).Round(time.Millisecond))
	if left := listVMs(t, env); len(left) != 0 {
		t.Fatalf("%d VMs left after concurrent rm", len(left))
	}
	if procs := hypervisors(env); len(procs) != 0 {
		t.Fatalf("%d hypervisors left after concurrent rm", len(procs))
	}
	ids := make([]string, len(vms))
	for i, vm := range vms {
		ids[i] = vm.ID
	}
	assertNoLeaks(t, h, ids...)
}

// mode returns the permission bits of path.
func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestPermissions(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "p", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("p")
	env.MustRun("snapshot", "save", "--name", "ps", "p")

	// Nothing cocoon made is writable by group or others, and nothing is readable by others
	// except what the spec documents (image blobs and boot files, which hold no VM data).
	checkTree := func(root string) {
		_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err != nil || info.Mode()&os.ModeSymlink != 0 {
				return nil
			}
			perm := info.Mode().Perm()
			if perm&0o022 != 0 {
				t.Errorf("%s is group/other-writable (%v)", p, perm)
			}
			return nil
		})
	}
	for _, d := range []string{env.Root, env.RunDir, env.LogDir} {
		checkTree(d)
		if m := mode(t, d); m&0o027 != 0 {
			t.Errorf("state dir %s has mode %v, want 0750 or stricter", d, m)
		}
	}
	for _, f := range []string{
		filepath.Join(env.Root, "vm", "db", "vms.json"),
		filepath.Join(env.Root, "snapshot", "db", "snapshots.json"),
		filepath.Join(vm.RunDir, "cow.raw"),
	} {
		if m := mode(t, f); m&0o077 != 0 {
			t.Errorf("%s has mode %v, want 0600", f, m)
		}
	}
	rams, _ := filepath.Glob(filepath.Join(env.MemDir, "*", "*"))
	if len(rams) == 0 {
		t.Errorf("no guest RAM file under %s", env.MemDir)
	}
	for _, f := range rams {
		if m := mode(t, f); m&0o077 != 0 {
			t.Errorf("guest RAM file %s has mode %v, want 0600", f, m)
		}
	}
	socks, _ := filepath.Glob(filepath.Join(vm.RunDir, "*.sock"))
	for _, s := range socks {
		if m := mode(t, s); m&0o022 != 0 {
			t.Errorf("socket %s has mode %v: others could connect", s, m)
		}
	}
	if m := mode(t, vm.RunDir); m&0o007 != 0 {
		t.Errorf("run dir %s has mode %v: others can reach its sockets", vm.RunDir, m)
	}
}

// A PID recorded for a VM that now belongs to another process is never signalled.
func TestRecycledPIDNeverSignalled(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "create", "--name", "r", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	other := exec.Command("sleep", "600")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", other.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Field 22 (start time) counted after the ")" that ends the command name.
	fields := strings.Fields(string(stat)[strings.LastIndex(string(stat), ")")+2:])
	start := fields[19]
	// Record the foreign PID as the VM's hypervisor, start time included (the worst case: only
	// the command line tells them apart).
	idx := filepath.Join(env.Root, "vm", "db", "vms.json")
	var x map[string]any
	data, _ := os.ReadFile(idx)
	if err := json.Unmarshal(data, &x); err != nil {
		t.Fatal(err)
	}
	for _, v := range x["vms"].(map[string]any) {
		rec := v.(map[string]any)
		rec["state"], rec["pid"] = "running", other.Process.Pid
		var st uint64
		fmt.Sscan(start, &st)
		rec["pid_start_time"] = st
	}
	data, _ = json.Marshal(x)
	if err := os.WriteFile(idx, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := env.MustRun("vm", "list"); !lineHas(out, "r", "stopped") {
		t.Errorf("a VM whose PID belongs to another process is not listed stopped:\n%s", out)
	}
	env.MustRun("vm", "stop", "--force", "r")
	env.MustRun("vm", "rm", "--force", "r")
	if err := other.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the unrelated process was signalled: %v", err)
	}
}

// A host reboot loses every hypervisor, the VM netns and the tmpfs RAM files; the records and
// disks stay. list shows the VMs stopped, start brings each back with its IP and MAC.
func TestHostRebootRecovery(t *testing.T) {
	env, h, ref := netEnv(t, 84)
	for _, n := range []string{"a", "b"} {
		env.MustRun("vm", "run", "--name", n, "--cpu", "1", "--memory", "512M", ref)
	}
	before := map[string]harness.VM{}
	for _, n := range []string{"a", "b"} {
		before[n] = env.Inspect(n)
		env.WaitConsole(before[n], "COCOON-READY", bootTimeout)
	}
	// The reboot.
	harness.KillProcessesMatching(env.RunDir)
	for _, vm := range before {
		waitGone(t, vm.PID)
		if out, err := exec.Command("ip", "netns", "delete", "cocoon-"+vm.ID).CombinedOutput(); err != nil {
			t.Fatalf("delete netns: %v %s", err, out)
		}
	}
	entries, _ := os.ReadDir(env.MemDir)
	for _, en := range entries {
		_ = os.RemoveAll(filepath.Join(env.MemDir, en.Name()))
	}
	out := env.MustRun("vm", "list")
	for _, n := range []string{"a", "b"} {
		if !lineHas(out, n, "stopped") {
			t.Fatalf("after the reboot %s is not listed stopped:\n%s", n, out)
		}
	}
	env.MustRun("vm", "start", "a", "b")
	for _, n := range []string{"a", "b"} {
		vm := env.Inspect(n)
		if vm.State != "running" || vm.Networks[0].IP != before[n].Networks[0].IP || vm.Networks[0].MAC != before[n].Networks[0].MAC {
			t.Fatalf("%s after reboot: state %s NIC %+v, before %+v", n, vm.State, vm.Networks[0], before[n].Networks[0])
		}
		waitReadyCount(t, env, vm, 2)
		if out, err := h.Exec("ping", "-c", "2", "-W", "5", vm.Networks[0].IP); err != nil {
			t.Fatalf("ping %s after reboot: %v\n%s", n, err, out)
		}
	}
}
