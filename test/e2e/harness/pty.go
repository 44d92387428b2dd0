package harness

import (
	"context"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// Console is `cocoon vm console` running on a real PTY, as a person at a terminal would use it.
type Console struct {
	t    testing.TB
	ptmx *os.File
	done chan error
	mu   sync.Mutex
	buf  strings.Builder
}

// AttachConsole starts `cocoon vm console ref` on a new PTY.
func (e *Env) AttachConsole(ref string, extra ...string) *Console {
	e.t.Helper()
	return e.StartPTY(append(append([]string{"vm", "console"}, extra...), ref)...)
}

// StartPTY starts `cocoon args...` on a new 40x120 PTY.
func (e *Env) StartPTY(args ...string) *Console {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := e.cmd(ctx, args...)
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		cancel()
		e.t.Fatalf("start cocoon %v on a PTY: %v", args, err)
	}
	c := &Console{t: e.t, ptmx: ptmx, done: make(chan error, 1)}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			c.mu.Lock()
			c.buf.Write(b[:n])
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { c.done <- cmd.Wait() }()
	e.t.Cleanup(func() { cancel(); ptmx.Close() })
	return c
}

// Output is everything the console showed so far.
func (c *Console) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// Send types s into the terminal.
func (c *Console) Send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.ptmx, s); err != nil {
		c.t.Fatalf("console write: %v", err)
	}
}

// Expect waits until the console output (after position from) contains want; it returns the
// position just past the match so successive Expects read forward.
func (c *Console) Expect(from int, want string, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := c.Output()
		if from > len(out) {
			from = len(out)
		}
		if i := strings.Index(out[from:], want); i >= 0 {
			return from + i + len(want)
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: %q not seen within %s; output:\n%s", want, timeout, tail(out[from:], 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Prompt presses Enter until prompt shows (a key typed while the guest's shell is still
// starting can be flushed away with the terminal's input queue) and returns the position just
// past it.
func (c *Console) Prompt(prompt string, timeout time.Duration) int {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		from := len(c.Output())
		c.Send("\r")
		for wait := time.Now().Add(5 * time.Second); time.Now().Before(wait); time.Sleep(100 * time.Millisecond) {
			if i := strings.Index(c.Output()[from:], prompt); i >= 0 {
				return from + i + len(prompt)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("console: no %q prompt within %s; output:\n%s", prompt, timeout, tail(c.Output(), 3000))
		}
	}
}

// Wait waits for the console command to exit and returns its error.
func (c *Console) Wait(timeout time.Duration) error {
	c.t.Helper()
	select {
	case err := <-c.done:
		return err
	case <-time.After(timeout):
		c.t.Fatalf("console did not exit within %s; output:\n%s", timeout, tail(c.Output(), 2000))
		return nil
	}
}
