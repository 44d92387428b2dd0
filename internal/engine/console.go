package engine

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// ErrNoConsoleTimes means the VM's console log has no timestamp index (the VM last started
// before cocoon's console relay recorded one).
var ErrNoConsoleTimes = errors.New("console log has no timestamps")

// ConsoleLogSince is the console log of a VM and the offset of its first byte logged at or
// after t. A log that does not exist yet gives offset 0 (nothing to skip).
func (e *Engine) ConsoleLogSince(ctx context.Context, ref string, t time.Time) (string, int64, *VM, error) {
	p, vm, err := e.ConsoleLogPath(ctx, ref)
	if err != nil {
		return "", 0, vm, err
	}
	off, err := relay.Since(p, t)
	if errors.Is(err, relay.ErrNoIndex) {
		if !fileExists(p) {
			return p, 0, vm, nil
		}
		return p, 0, vm, ErrNoConsoleTimes
	}
	return p, off, vm, err
}

// awaitConsoleRelay waits (briefly) for the console relay of a VM whose hypervisor just
// stopped, so its last output is in the log when stop returns.
func (e *Engine) awaitConsoleRelay(b hypervisor.Backend, vm *VM) {
	if cl, ok := b.(hypervisor.ConsoleLogger); ok {
		if err := relay.Wait(cl.ConsoleLog(vm.LogDir), 5*time.Second); err != nil {
			slog.Warn("console relay", "vm", vm.Name, "err", err)
		}
	}
}
