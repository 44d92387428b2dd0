package relay

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// KillStale ends every relay whose client socket is socket, whoever started it, and waits
// until they are gone. Call it only when no hypervisor serves that console: such a relay is
// one whose launch was interrupted (the CLI was killed between starting it and the
// hypervisor) and that is still dialing for nobody. Relays are found by their argv
// (ProcessName, socket), checked again through a pidfd before the signal.
func KillStale(socket string) error {
	want := []byte(ProcessName + "\x00" + socket + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("find stale console relays: %w", err)
	}
	var errs []error
	for _, en := range entries {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if !bytes.Equal(cmdline(pid), want) {
			continue
		}
		p, err := os.FindProcess(pid) // a pidfd: the checks below and the signal reach one process
		if err != nil {
			continue
		}
		if bytes.Equal(cmdline(pid), want) {
			if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill stale console relay %d: %w", pid, err))
			} else {
				waitGone(pid, want)
			}
		}
		_ = p.Release()
	}
	return errors.Join(errs...)
}

func cmdline(pid int) []byte {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return b
}

// waitGone waits (up to 5 s) until pid no longer runs as the relay it was: gone, or a zombie
// (whose cmdline is empty), or another process.
func waitGone(pid int, want []byte) {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if !bytes.Equal(cmdline(pid), want) {
			return
		}
	}
}
