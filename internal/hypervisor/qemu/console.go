package qemu

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// serialLine connects the guest's serial port to its console relay: QEMU gets one end of a
// connected socket pair as the port's chardev, the relay the other. Nothing waits on anything:
// QEMU does not hold the guest until a relay dials in, and the relay starts while QEMU does
// (output written before it reads waits in the socket, and a full socket stalls the guest's
// console rather than losing it).
type serialLine struct{ qemu, relay *os.File }

func newSerialLine() (serialLine, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return serialLine{}, fmt.Errorf("serial port socket pair: %w", err)
	}
	return serialLine{qemu: os.NewFile(uintptr(fds[0]), "serial-qemu"), relay: os.NewFile(uintptr(fds[1]), "serial-relay")}, nil
}

// Close drops this process's copies once QEMU and the relay hold theirs; it may run twice.
func (s serialLine) Close() {
	s.qemu.Close()
	s.relay.Close()
}

// startConsoleRelay starts the relay that reads the serial port from its end of the line: it
// logs the console with timestamps to console.log and serves `vm console` on console.sock, and
// exits when QEMU's end closes (QEMU exited, or a CLI killed before launching it).
func startConsoleRelay(spec hypervisor.VMSpec, line *os.File) (int, error) {
	// No QEMU runs for this VM (launch checked), but the relay of the previous run may still
	// be writing its last output; one still there after that was left by a killed CLI.
	log := consoleLogPath(spec.LogDir)
	if err := relay.Wait(log, 2*time.Second); err != nil {
		if err := relay.KillStale(consolePath(spec.RunDir)); err != nil {
			return 0, fmt.Errorf("console: %w", err)
		}
		if err := relay.Wait(log, 5*time.Second); err != nil {
			return 0, fmt.Errorf("console: %w", err)
		}
	}
	pid, err := relay.Start(relay.Options{Endpoint: relay.Endpoint{FD: line}, Socket: consolePath(spec.RunDir), Log: log})
	if err != nil {
		return 0, fmt.Errorf("console: %w", err)
	}
	return pid, nil
}

// relayStart is the outcome of a relay started beside a launching QEMU.
type relayStart struct {
	pid int
	err error
}

// stopConsoleRelay ends the relay of a launch that failed after starting it, so nothing of
// the launch is left.
func stopConsoleRelay(pid int) {
	if pid > 0 {
		relay.Kill(pid)
	}
}
