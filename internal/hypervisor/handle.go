package hypervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotRunning means the VM's hypervisor is not running: no PID, the process is gone, or the
// PID now belongs to an unrelated process.
var ErrNotRunning = errors.New("hypervisor is not running")

// Owner says how to recognise one VM's hypervisor among all processes.
type Owner struct {
	Binary  string // argv[0]'s base name must contain this binary's base name
	Marker  string // some argument must contain this (the VM's control socket path)
	PIDFile string // read when VMRef.PID is 0
}

// Handle is a pidfd pinned to a verified hypervisor process: a signal sent through it can
// never reach a process that later reuses the PID.
type Handle struct {
	PID int
	fd  int
}

// Open finds the VM's hypervisor and checks it really is that: the start time matches the
// record (when known) and the command line names the binary and the VM's own socket. It
// returns an error wrapping ErrNotRunning when the VM has no live hypervisor.
func Open(ref VMRef, o Owner) (*Handle, error) {
	pid := ref.PID
	if pid == 0 {
		var err error
		if pid, err = ReadPIDFile(o.PIDFile); err != nil {
			return nil, err
		}
		if pid == 0 {
			return nil, fmt.Errorf("no pid recorded for VM %s: %w", ref.ID, ErrNotRunning)
		}
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("pid %d of VM %s is gone: %w", pid, ref.ID, ErrNotRunning)
	}
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d (needs Linux 5.3 or newer): %w", pid, err)
	}
	h := &Handle{PID: pid, fd: fd}
	if err := verifyOwner(pid, ref.StartTime, o); err != nil {
		h.Close()
		return nil, fmt.Errorf("pid %d is not the hypervisor of VM %s (%v): %w", pid, ref.ID, err, ErrNotRunning)
	}
	// /proc was read after the pidfd was opened: if the pidfd's process is still alive, it
	// still owns the PID, so what we read was this process and not a successor.
	if err := unix.PidfdSendSignal(fd, 0, nil, 0); err != nil {
		h.Close()
		return nil, fmt.Errorf("pid %d of VM %s exited: %w", pid, ref.ID, ErrNotRunning)
	}
	return h, nil
}

func verifyOwner(pid int, startTime uint64, o Owner) error {
	if startTime != 0 {
		got, err := StartTime(pid)
		if err != nil {
			return err
		}
		if got != startTime {
			return fmt.Errorf("start time %d, recorded %d", got, startTime)
		}
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return err
	}
	args := bytes.Split(bytes.TrimRight(raw, "\x00"), []byte{0})
	if len(args) == 0 || !bytes.Contains([]byte(filepath.Base(string(args[0]))), []byte(filepath.Base(o.Binary))) {
		return fmt.Errorf("command is not %s", filepath.Base(o.Binary))
	}
	for _, a := range args[1:] {
		if bytes.Contains(a, []byte(o.Marker)) {
			return nil
		}
	}
	return fmt.Errorf("command line does not mention %s", o.Marker)
}

// Close releases the pidfd.
func (h *Handle) Close() { _ = unix.Close(h.fd) }

// Signal sends sig to the pinned process; ESRCH means it has already exited.
func (h *Handle) Signal(sig unix.Signal) error {
	if err := unix.PidfdSendSignal(h.fd, sig, nil, 0); err != nil {
		return fmt.Errorf("send %v to pid %d: %w", sig, h.PID, err)
	}
	return nil
}

// WaitExit waits up to timeout for the process to exit. It polls the pidfd, which works for
// processes that are not our children (a later CLI never is the hypervisor's parent).
func (h *Handle) WaitExit(ctx context.Context, timeout time.Duration) (bool, error) {
	deadline := time.Now().Add(timeout)
	for {
		// Short slices so a cancelled context is noticed promptly.
		step := min(time.Until(deadline), 100*time.Millisecond)
		if step <= 0 {
			return false, nil
		}
		fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, max(int(step.Milliseconds()), 1))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false, fmt.Errorf("wait for pid %d: %w", h.PID, err)
		}
		if n > 0 {
			return true, nil
		}
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("wait for pid %d: %w", h.PID, err)
		}
	}
}
