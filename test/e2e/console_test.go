package e2e

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/test/e2e/harness"
)

// TestConsoleDetachInTmux is the console as a person uses it, in a real terminal emulator:
// the busybox shell asks the terminal for the cursor position after each prompt (ESC[6n), and
// tmux's answer arrives as input between Enter and ^]. The escape sequence must still detach.
func TestConsoleDetachInTmux(t *testing.T) {
	harness.Require(t, "qemu-system-x86_64", "mkfs.erofs", "mkfs.ext4", "tmux")
	env := harness.NewEnv(t)
	ref := pullTiny(t, env)
	env.MustRun("vm", "run", "--name", "t1", "--nics", "0", "--cpu", "1", "--memory", "512M", ref)
	vm := env.Inspect("t1")
	env.WaitConsole(vm, "COCOON-READY hostname=t1", bootTimeout)

	argv := append([]string{"env"}, env.ExtraEnv...)
	argv = append(argv, env.Cmd(context.Background(), "vm", "console", "t1").Args...)
	tm := harness.TmuxRun(t, argv...)
	tm.WaitFor("Connected to t1", 1, 30*time.Second)
	// Enter until the shell's prompt shows (keys typed while it starts may be flushed); tmux
	// trims trailing spaces, so the prompt is "tiny#".
	for deadline := time.Now().Add(time.Minute); !strings.Contains(tm.Screen(), "tiny#"); {
		if time.Now().After(deadline) {
			t.Fatalf("no prompt; screen:\n%s", tm.Screen())
		}
		tm.Keys("Enter")
		time.Sleep(2 * time.Second)
	}
	tm.Keys("echo hello-$((6*7))", "Enter")
	tm.WaitFor("hello-42", 1, 30*time.Second)
	prompts := strings.Count(tm.Screen(), "tiny#")
	tm.Keys("Enter")
	tm.WaitFor("tiny#", prompts+1, 30*time.Second)
	time.Sleep(time.Second) // let the terminal's cursor position report reach the guest input
	tm.Keys("C-]", ".")
	screen := tm.WaitFor("PANE-DONE", 1, 30*time.Second)
	if !strings.Contains(screen, "Disconnected from t1.") {
		t.Fatalf("no detach message; screen:\n%s", screen)
	}
	// The case this test is about: the guest did ask the terminal for the cursor position.
	if log, _ := os.ReadFile(vm.LogDir + "/console.log"); !strings.Contains(string(log), "\x1b[6n") {
		t.Fatal("the guest shell never sent ESC[6n: this test no longer covers a terminal's replies in the input")
	}
	if vm := env.Inspect("t1"); vm.State != "running" {
		t.Fatalf("VM not running after detach: %s", vm.State)
	}
	env.MustRun("vm", "rm", "--force", "t1")
}
