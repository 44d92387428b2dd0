package harness

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Tmux is a command running in a real terminal emulator (a detached tmux session on a private
// server): unlike a bare PTY, tmux answers the guest's terminal queries (cursor position,
// device attributes) the way a person's terminal does.
type Tmux struct {
	t      testing.TB
	socket string
}

// TmuxRun starts argv in a new 120x40 tmux session; after argv exits the pane stays, showing
// "PANE-DONE" so callers can see that it ended.
func TmuxRun(t testing.TB, argv ...string) *Tmux {
	t.Helper()
	Require(t, "tmux")
	x := &Tmux{t: t, socket: "cocoon-e2e-" + randHex(4)}
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	script := strings.Join(quoted, " ") + "; echo PANE-DONE; sleep 600"
	if out, err := exec.Command("tmux", "-L", x.socket, "-f", "/dev/null", "new-session", "-d", "-x", "120", "-y", "40", "sh", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("tmux", "-L", x.socket, "kill-server").Run() })
	return x
}

// Keys types keys with tmux send-keys (key names such as Enter or C-] as tmux spells them).
func (x *Tmux) Keys(keys ...string) {
	x.t.Helper()
	if out, err := exec.Command("tmux", append([]string{"-L", x.socket, "send-keys"}, keys...)...).CombinedOutput(); err != nil {
		x.t.Fatalf("tmux send-keys %v: %v\n%s", keys, err, out)
	}
}

// Screen is the pane's visible text plus its scrollback.
func (x *Tmux) Screen() string {
	out, err := exec.Command("tmux", "-L", x.socket, "capture-pane", "-p", "-S", "-200").Output()
	if err != nil {
		x.t.Fatalf("tmux capture-pane: %v", err)
	}
	return string(out)
}

// WaitFor waits until the screen has want at least n times and returns the screen.
func (x *Tmux) WaitFor(want string, n int, timeout time.Duration) string {
	x.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := x.Screen()
		if strings.Count(s, want) >= n {
			return s
		}
		if time.Now().After(deadline) {
			x.t.Fatalf("tmux: %q not shown %d times within %s; screen:\n%s", want, n, timeout, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
