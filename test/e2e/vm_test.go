package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

const bootTimeout = 3 * time.Minute

// pullTiny serves the tiny image from a registry on 127.0.0.1 and pulls it into env.
func pullTiny(t *testing.T, env *harness.Env) string {
	t.Helper()
	layout := harness.RequireImage(t, "tiny")
	ref := harness.NewRegistry(t).PushLayout(layout, "cocoon/tiny:1")
	env.MustRun("image", "pull", ref)
	return ref
}

func TestTinyLifecycle(t *testing.T) {
	harness.ForEachBackend(t, tinyLifecycle)
}

func tinyLifecycle(t *testing.T, b harness.Backend) {
	harness.Require(t, "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustRun(append(append([]string{"vm", "run"}, b.Flags...), "--name", "t1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)...)
	vm := env.Inspect("t1")
	if vm.State != "running" || vm.PID == 0 {
		t.Fatalf("after run: state %s pid %d", vm.State, vm.PID)
	}
	env.WaitConsole(vm, "COCOON-READY hostname=t1", bootTimeout)

	// The console, on a real PTY: run a command, then detach with ^] . and the VM keeps running.
	c := env.AttachConsole("t1")
	pos := c.Prompt("tiny# ", time.Minute)
	c.Send("echo hello-$((6*7))\r")
	c.Expect(pos, "hello-42", 30*time.Second)
	env.MustFail("console of VM t1 is already attached", "vm", "console", "t1")
	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("console exit: %v", err)
	}
	if vm := env.Inspect("t1"); vm.State != "running" {
		t.Fatalf("VM not running after console detach: %s", vm.State)
	}

	// Graceful stop (QEMU: the ACPI power button; the guest's poweroff shows on its console).
	env.MustRun("vm", "stop", "t1")
	if vm := env.Inspect("t1"); vm.State != "stopped" {
		t.Fatalf("after stop: %s", vm.State)
	}
	if !processGone(vm.PID) {
		t.Fatalf("hypervisor pid %d still alive after stop", vm.PID)
	}
	// Cloud Hypervisor stops direct-booted guests with vm.shutdown (spec §9.6): no guest power-off.
	if log := env.ConsoleLog(vm); b.Name != "cloud-hypervisor" && !strings.Contains(log, "reboot: Power down") {
		t.Fatalf("stop was not a guest power-off; console tail:\n%s", tail(log))
	}

	// Start again: a second boot prints a second ready line.
	env.MustRun("vm", "start", "t1")
	vm = env.Inspect("t1")
	waitReadyCount(t, env, vm, 2)

	// rm of a running VM needs --force; then nothing is left behind.
	env.MustFail("stop it first or use rm --force", "vm", "rm", "t1")
	env.MustRun("vm", "rm", "--force", "t1")
	if !processGone(vm.PID) {
		t.Fatalf("hypervisor pid %d alive after rm -f", vm.PID)
	}
	for _, dir := range []string{env.RunDir, env.LogDir, env.MemDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("rm left files in %s: %v", dir, entries)
		}
	}
	if out := env.MustRun("vm", "list"); !strings.Contains(out, "No VMs found.") {
		t.Fatalf("VM still listed:\n%s", out)
	}
}

func TestTwoVMsAndCrashReconciliation(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)

	env.MustRun("vm", "run", "--name", "a", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.MustRun("vm", "run", "--name", "b", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	a, b := env.Inspect("a"), env.Inspect("b")
	env.WaitConsole(a, "COCOON-READY hostname=a", bootTimeout)
	env.WaitConsole(b, "COCOON-READY hostname=b", bootTimeout)
	env.MustFail(`VM name "a" already exists`, "vm", "create", "--name", "a", "--nics", "0", ref)

	// Killing the hypervisor by hand is reflected as stopped by the next list (written back).
	if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, a.PID)
	list := env.MustRun("vm", "list")
	if !lineHas(list, "a", "stopped") || !lineHas(list, "b", "running") {
		t.Fatalf("list does not reflect the crash:\n%s", list)
	}
	if st := env.Inspect(a.ID).State; st != "stopped" {
		t.Fatalf("state not written back: %s", st)
	}
	// A batch stop by another CLI process, by ID prefix.
	env.MustRun("vm", "stop", "--force", b.ID[:6], "a")
	if !processGone(b.PID) {
		t.Fatalf("b still running")
	}
}

// A hypervisor that dies at once leaves the VM in error, with the log path in the message.
func TestStartFailureLeavesErrorState(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "create", "--name", "broken", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.ExtraEnv = []string{"COCOON_QEMU_BINARY=/bin/false"}
	r := env.MustFail("qemu.log", "vm", "start", "broken")
	_ = r
	env.ExtraEnv = nil
	vm := env.Inspect("broken")
	if vm.State != "error" {
		t.Fatalf("state after failed start: %s", vm.State)
	}
	// It can be started properly afterwards, and removed without leftovers.
	env.MustRun("vm", "start", "broken")
	env.WaitConsole(env.Inspect("broken"), "COCOON-READY", bootTimeout)
	env.MustRun("vm", "rm", "--force", "broken")
	for _, dir := range []string{env.RunDir, env.LogDir, env.MemDir} {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("rm left files in %s: %v", dir, entries)
		}
	}
}

// `vm debug` prints a command that really boots the same VM by hand.
func TestDebugCommandBoots(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	dir := t.TempDir()
	script := env.MustRun("vm", "debug", "--nics", "0", "--cpu", "1", "--memory", "512M", "--name", "dbg", "--cow", filepath.Join(dir, "cow.raw"), ref)
	if !strings.Contains(script, "qemu-system-x86_64") || !strings.Contains(script, "cocoon.layers=") {
		t.Fatalf("unexpected debug output:\n%s", script)
	}
	logPath := filepath.Join(dir, "console.log")
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { harness.KillProcessesMatching(dir); _ = cmd.Wait() })
	deadline := time.Now().Add(bootTimeout)
	for {
		data, _ := os.ReadFile(logPath)
		if strings.Contains(string(data), "COCOON-READY hostname=dbg") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("debug command did not boot; console:\n%s", tail(string(data)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitReadyCount waits until the VM's console log holds n ready lines (one per boot).
func waitReadyCount(t *testing.T, env *harness.Env, vm harness.VM, n int) {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for strings.Count(env.ConsoleLog(vm), "COCOON-READY") < n {
		if time.Now().After(deadline) {
			t.Fatalf("VM %s: boot %d not ready; console:\n%s", vm.Name, n, tail(env.ConsoleLog(vm)))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func processGone(pid int) bool {
	if pid <= 0 {
		return true
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// A zombie (state Z) is gone for our purposes: it holds no resources.
	fields := strings.Fields(string(data))
	return len(fields) > 2 && fields[2] == "Z"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 100 && !processGone(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
}

func lineHas(table, name, state string) bool {
	for _, l := range strings.Split(table, "\n") {
		f := strings.Fields(l)
		if len(f) > 2 && f[1] == name && f[2] == state {
			return true
		}
	}
	return false
}

func tail(s string) string {
	if len(s) > 3000 {
		return s[len(s)-3000:]
	}
	return s
}
