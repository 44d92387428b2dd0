package engine

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/store"
)

// pausedMarker is written durably into the VM's run dir before a command pauses the guest and
// removed once it resumed it. A command killed in between leaves it behind: the next command
// holding the VM's operation lock (or a list/inspect that finds the lock free) resumes the guest.
const pausedMarker = "paused-by-cocoon"

// CrashPaused is the crash point between pausing a guest for a snapshot and resuming it.
const CrashPaused = "snapshot-paused"

func pausedPath(runDir string) string { return filepath.Join(runDir, pausedMarker) }

// markPaused records, before the pause, that this command is about to pause the guest.
func markPaused(vm *VM, why string) error {
	return store.WriteFileAtomic(pausedPath(vm.RunDir), []byte(why+" "+time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o600)
}

func clearPaused(vm *VM) {
	if err := os.Remove(pausedPath(vm.RunDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("cannot remove pause marker", "vm", vm.Name, "err", err)
	}
}

func isPaused(runDir string) bool {
	_, err := os.Stat(pausedPath(runDir))
	return err == nil
}

// resumeIfInterrupted runs with the VM's operation lock held: when an interrupted command left
// the guest paused, it resumes it. Cheap when there is nothing to do (one stat).
func (e *Engine) resumeIfInterrupted(ctx context.Context, id string) {
	if !isPaused(filepath.Join(e.cfg.RunDir, id)) {
		return
	}
	vm, err := e.getVM(ctx, id)
	if err != nil {
		return // the record is gone (rm removes the run dir too) or unreadable: the command says so
	}
	e.resumeLocked(ctx, vm)
}

// resumeLocked resumes a guest whose pause marker is left, then drops the marker; the caller
// holds the VM's operation lock. A failed resume keeps the marker for the next command.
func (e *Engine) resumeLocked(ctx context.Context, vm *VM) {
	if !isPaused(vm.RunDir) || vm.State == StateStandby { // a standby's guest stays paused until taken over
		return
	}
	if !e.alive(vm) {
		clearPaused(vm) // no process, no paused guest
		return
	}
	_, sn, err := e.snapshotter(vm)
	if err == nil {
		err = sn.Resume(context.WithoutCancel(ctx), vm.ref())
	}
	if err != nil {
		slog.Warn("guest left paused by an interrupted command could not be resumed; the next command on it retries",
			"vm", vm.Name, "err", err)
		return
	}
	clearPaused(vm)
	slog.Warn("resumed guest left paused by an interrupted command", "vm", vm.Name)
}

// resumeInterrupted resumes the running VMs of all whose guest an interrupted command left
// paused, each only when its operation lock is free (a snapshot save that is still running
// holds it and resumes its guest itself).
func (e *Engine) resumeInterrupted(ctx context.Context, all []VM) {
	for i := range all {
		vm := &all[i]
		if vm.State != StateRunning || !isPaused(vm.RunDir) {
			continue
		}
		l := e.vmLock(vm.ID)
		if l.TryLock() != nil {
			continue
		}
		if cur, err := e.getVM(ctx, vm.ID); err == nil { // as it is now that the lock is ours
			e.resumeLocked(ctx, cur)
		}
		l.Unlock() //nolint:errcheck
	}
}
