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
	// No QEMU runs for this VM (launch checked), but the relay of the previous run may still
	// be writing its last output; one still there after that was left dialing by a CLI killed
	// between starting it and QEMU.
	log := consoleLogPath(spec.LogDir)
	if err := relay.Wait(log, 2*time.Second); err != nil {
		if err := relay.KillStale(consolePath(spec.RunDir)); err != nil {
			return 0, fmt.Errorf("console: %w", err)
		}
		if err := relay.Wait(log, 5*time.Second); err != nil {
			return 0, fmt.Errorf("console: %w", err)
		}
	}
	pid, err := relay.Start(relay.Options{
		Endpoint: relay.Endpoint{Dial: serialPath(spec.RunDir)},
		Socket:   consolePath(spec.RunDir),
		Log:      log,
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
