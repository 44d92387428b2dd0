package qemu

import (
	"fmt"
	"time"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// startConsoleRelay starts the relay that holds the serial port QEMU serves on serial.sock
// (wait=on: the guest runs once the relay is connected): it logs the console with timestamps
// to console.log and serves `vm console` on console.sock. It exits when QEMU does, or when no
// QEMU comes to serve serial.sock within relayDialTimeout.
func startConsoleRelay(spec hypervisor.VMSpec) (int, error) {
	// The relay of the previous run (no QEMU runs now) may still be writing its last output,
	// or, when a CLI was killed between starting it and QEMU, still be dialing for a while.
	if err := relay.Wait(consoleLogPath(spec.LogDir), relayDialTimeout+5*time.Second); err != nil {
		return 0, fmt.Errorf("console: %w", err)
	}
	pid, err := relay.Start(relay.Options{
		Endpoint: relay.Endpoint{Dial: serialPath(spec.RunDir)},
		Socket:   consolePath(spec.RunDir),
		Log:      consoleLogPath(spec.LogDir),
		// QEMU creates the socket early in its startup, but a loaded host can be slow.
		DialTimeout: relayDialTimeout,
	})
	if err != nil {
		return 0, fmt.Errorf("console: %w", err)
	}
	return pid, nil
}

const relayDialTimeout = 30 * time.Second

// stopConsoleRelay ends the relay of a launch that failed after starting it (QEMU is gone,
// but the relay may still be dialing it), so nothing of the launch is left.
func stopConsoleRelay(pid int) {
	if pid > 0 {
		relay.Kill(pid)
	}
}
