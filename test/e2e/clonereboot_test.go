package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// A direct-booted x86 guest resumed from a snapshot runs without QEMU's copy of its kernel, so
// a guest reboot powers it off (as on Firecracker); `vm start` then boots it afresh, and it
// still has what it wrote before.
func TestCloneRebootPowersOff(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "src", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	env.WaitConsole(env.Inspect("src"), "COCOON-READY", bootTimeout)
	env.MustRun("snapshot", "save", "--name", "s", "src")
	env.MustRun("vm", "clone", "--name", "c1", "s")
	c1 := env.Inspect("c1")
	if argv, _ := os.ReadFile(filepath.Join(c1.RunDir, "cmdline")); strings.Contains(string(argv), "-kernel") ||
		!strings.Contains(string(argv), "reboot=shutdown") {
		t.Fatalf("clone launched with a kernel copy or without reboot=shutdown:\n%s", argv)
	}
	c := env.AttachConsole("c1")
	c.Send("\recho kept >/root/mark; sync; reboot -f\r")
	for deadline := time.Now().Add(time.Minute); env.Inspect("c1").State != "stopped"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("clone still %s a minute after its guest rebooted", env.Inspect("c1").State)
		}
	}
	_ = c.Wait(15 * time.Second)
	readyBefore := strings.Count(env.ConsoleLog(c1), "COCOON-READY")
	env.MustRun("vm", "start", "c1")
	for deadline := time.Now().Add(bootTimeout); strings.Count(env.ConsoleLog(c1), "COCOON-READY") == readyBefore; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("clone did not boot again after vm start; console:\n%s", env.ConsoleLog(c1))
		}
	}
	if argv, _ := os.ReadFile(filepath.Join(c1.RunDir, "cmdline")); !strings.Contains(string(argv), "-kernel") {
		t.Fatalf("a cold boot without its kernel:\n%s", argv)
	}
	c = env.AttachConsole("c1")
	c.Send("\rcat /root/mark\r")
	c.Expect(0, "kept\r\n", time.Minute)
	c.Send("\r\x1d.")
	_ = c.Wait(15 * time.Second)
}
