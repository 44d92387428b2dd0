package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/hvtest"
	"github.com/cocoonstack/cocoon/internal/hypervisor/qemu"
)

// syncBuffer collects output written by one goroutine and read by another.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func waitFor(t *testing.T, b *syncBuffer, text string) {
	t.Helper()
	deadline := time.Now().Add(hvtest.BootTimeout)
	for !strings.Contains(b.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("%q never appeared; got:\n%s", text, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitResult(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(hvtest.BootTimeout):
		t.Fatal("Attach did not return")
		return nil
	}
}

// TestAttachRelaysAndDetaches drives a real VM's serial console through a PTY like a user
// at a terminal, then through a pipe like a script.
func TestAttachRelaysAndDetaches(t *testing.T) {
	hvtest.RequireQEMU(t)
	spec := hvtest.Spec(t, hvtest.Build(t))
	b := qemu.New(qemu.Options{})
	p, err := b.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	ref := hypervisor.VMRef{ID: spec.ID, RunDir: spec.RunDir, PID: p.PID, StartTime: p.StartTime}
	t.Cleanup(func() { _ = b.Stop(context.Background(), ref, hypervisor.StopOptions{Force: true}) })
	hvtest.WaitForText(t, filepath.Join(spec.LogDir, "console.log"), hvtest.Ready)
	sock, lockPath := b.ConsoleSocket(ref), filepath.Join(spec.RunDir, "console.lock")

	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close(); tty.Close() })
	before, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	var screen syncBuffer
	go func() { _, _ = io.Copy(&screen, ptmx) }()

	errc := make(chan error, 1)
	go func() { errc <- Attach(context.Background(), sock, lockPath, tty, tty, DefaultEscape, nil) }()
	if _, err := ptmx.WriteString("echo HELLO-$((6*7))\r"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &screen, "HELLO-42") // computed by the guest's shell, not echoed locally

	// A second session is refused while the first holds the console.
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	if err := Attach(context.Background(), sock, lockPath, r, io.Discard, DefaultEscape, nil); !errors.Is(err, ErrAlreadyAttached) {
		t.Fatalf("second Attach: %v, want ErrAlreadyAttached", err)
	}

	if _, err := ptmx.WriteString("\x1d?"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &screen, "disconnect (the VM keeps running)")
	if _, err := ptmx.WriteString("\x1d."); err != nil {
		t.Fatal(err)
	}
	if err := waitResult(t, errc); err != nil {
		t.Fatalf("Attach after ^].: %v", err)
	}
	after, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *after != *before {
		t.Errorf("terminal mode not restored: %+v, was %+v", after, before)
	}
	if !b.Alive(ref) {
		t.Fatal("VM died when the console detached")
	}

	// Piped input (not a terminal) with "~" as the escape character; the lock was released.
	var out syncBuffer
	go func() { errc <- Attach(context.Background(), sock, lockPath, r, &out, '~', nil) }()
	if _, err := w.WriteString("echo PIPE-$((2+3))\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "PIPE-5")
	if _, err := w.WriteString("~."); err != nil {
		t.Fatal(err)
	}
	if err := waitResult(t, errc); err != nil {
		t.Fatalf("Attach after ~.: %v", err)
	}

	// A VM that powers off ends the session cleanly.
	go func() { errc <- Attach(context.Background(), sock, lockPath, r, &out, '~', nil) }()
	if _, err := w.WriteString("echo ATTACHED-$((1+1))\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, &out, "ATTACHED-2")
	if err := b.Stop(context.Background(), ref, hypervisor.StopOptions{Timeout: hvtest.BootTimeout}); err != nil {
		t.Fatal(err)
	}
	if err := waitResult(t, errc); err != nil {
		t.Fatalf("Attach when the VM stopped: %v", err)
	}
	if !strings.Contains(out.String(), hvtest.PowerButton) {
		t.Errorf("console did not show the power-off:\n%s", out.String())
	}
}
