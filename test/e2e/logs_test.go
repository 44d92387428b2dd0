package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// relayPIDs lists the console relays serving a VM (their argv names its console socket).
func relayPIDs(vm harness.VM) []int {
	want := "cocoon-console-relay\x00" + filepath.Join(vm.RunDir, "console.sock")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline"); strings.HasPrefix(string(cmd), want) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestConsoleRelayAndLogsSince: the serial console goes through cocoon's relay, which logs it
// with timestamps; `vm logs --since` prints only what came after a moment, and the relay ends
// with the VM.
func TestConsoleRelayAndLogsSince(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "r1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("r1")
	env.WaitConsole(vm, "COCOON-READY hostname=r1", bootTimeout)
	if pids := relayPIDs(vm); len(pids) != 1 {
		t.Fatalf("console relays of the running VM: %v, want one", pids)
	}

	c := env.AttachConsole("r1")
	pos := c.Prompt("tiny# ", time.Minute)
	c.Send("echo before-$((6*7))\r")
	pos = c.Expect(pos, "before-42", 30*time.Second)
	env.WaitConsole(vm, "before-42", 30*time.Second)
	mark := time.Now()
	// Output within ~10 ms of the last index record shares its time; let that window pass
	// (what follows asserts nothing about durations).
	time.Sleep(100 * time.Millisecond)
	c.Send("echo after-$((6*7))\r")
	c.Expect(pos, "after-42", 30*time.Second)
	env.WaitConsole(vm, "after-42", 30*time.Second)

	checkSince := func(since string, tailArgs ...string) string {
		t.Helper()
		out := env.MustRun(append([]string{"vm", "logs", "--since", since}, append(tailArgs, "r1")...)...)
		if !strings.Contains(out, "after-42") || strings.Contains(out, "before-42") || strings.Contains(out, "COCOON-READY") {
			t.Fatalf("vm logs --since %s %v printed:\n%s", since, tailArgs, out)
		}
		return out
	}
	checkSince(mark.Format(time.RFC3339Nano))
	checkSince(mark.Format(time.RFC3339Nano), "--tail", "5")
	checkSince(strconv.FormatFloat(float64(mark.UnixNano())/1e9, 'f', 6, 64))
	// A duration reaches back over everything of this boot.
	if out := env.MustRun("vm", "logs", "--since", "1h", "r1"); !strings.Contains(out, "before-42") || !strings.Contains(out, "after-42") {
		t.Fatalf("vm logs --since 1h lacks output:\n%s", out)
	}
	// A later time: nothing (the VM is idle at its prompt).
	if out := env.MustRun("vm", "logs", "--since", time.Now().Add(time.Hour).Format(time.RFC3339), "r1"); strings.Contains(out, "after-42") {
		t.Fatalf("vm logs --since <future> printed:\n%s", out)
	}
	env.MustFail("invalid --since", "vm", "logs", "--since", "yesterday", "r1")

	c.Send("\r\x1d.")
	if err := c.Wait(15 * time.Second); err != nil {
		t.Fatalf("console exit: %v", err)
	}

	// Stop: the guest's last words are in the log, and no relay or socket is left.
	env.MustRun("vm", "stop", "r1")
	if log := env.ConsoleLog(vm); !strings.Contains(log, "reboot: Power down") {
		t.Fatalf("console log lacks the power-off; tail:\n%s", tail(log))
	}
	if pids := relayPIDs(vm); len(pids) != 0 {
		t.Fatalf("console relay still running after stop: %v", pids)
	}
	if _, err := os.Lstat(filepath.Join(vm.RunDir, "console.sock")); err == nil {
		t.Error("console.sock left after stop")
	}

	// A log without its index (a VM that last ran before cocoon kept one) is refused clearly.
	if err := os.Remove(filepath.Join(vm.LogDir, "console.log.idx")); err != nil {
		t.Fatal(err)
	}
	env.MustFail("--since needs console timestamps, which VM r1 (started before cocoon recorded them) does not have: restart it",
		"vm", "logs", "--since", "10m", "r1")
	// A restart starts the index again (over the older, untimed output) and a new relay.
	env.MustRun("vm", "start", "r1")
	vm = env.Inspect("r1")
	waitReadyCount(t, env, vm, 2)
	restart := env.MustRun("vm", "logs", "--since", "1h", "r1")
	if !strings.Contains(restart, "before-42") {
		t.Fatalf("--since before the first recorded time must include untimed older output:\n%s", tail(restart))
	}
	if pids := relayPIDs(vm); len(pids) != 1 {
		t.Fatalf("console relays after restart: %v, want one", pids)
	}
	env.MustRun("vm", "rm", "--force", "r1")
	if pids := relayPIDs(vm); len(pids) != 0 {
		t.Fatalf("console relay still running after rm --force: %v", pids)
	}
}
