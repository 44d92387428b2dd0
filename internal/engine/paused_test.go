package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// A pause marker left for a VM that has no process any more is dropped by the next command
// holding the VM's lock (nothing to resume). Resuming a live guest is proven end to end by
// TestCrashWhilePausedForSnapshot.
func TestPauseMarkerOfDeadVMIsDropped(t *testing.T) {
	e := newTestEngine(t)
	seedVMs(t, e, 1)
	ctx := context.Background()
	id := fmt.Sprintf("%026d", 0)
	runDir := filepath.Join(e.cfg.RunDir, id)
	if _, err := e.updateVM(ctx, id, func(r *VM) error { r.RunDir, r.State = runDir, StateRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	vm, err := e.getVM(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(runDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := markPaused(vm, "test"); err != nil {
		t.Fatal(err)
	}
	if err := e.withVMLock(ctx, id, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	if isPaused(runDir) {
		t.Fatal("the pause marker of a VM without a process survived a command holding its lock")
	}
}
