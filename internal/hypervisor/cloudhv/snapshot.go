package cloudhv

import (
	"context"
	"fmt"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// The files vm.snapshot writes into a snapshot directory. Cloud Hypervisor writes all guest
// RAM to one file, memory-ranges (SNAPSHOT_FILENAME in vmm/src/memory_manager.rs); a restore
// reads (or, OnDemand, maps through userfaultfd) the same three names from its source_url.
const (
	configFile = "config.json"
	stateFile  = "state.json"
	memoryFile = "memory-ranges"
)

// StateFile implements hypervisor.Snapshotter.
func (b *Backend) StateFile(name string) bool {
	return name == configFile || name == stateFile || name == memoryFile
}

// Pause implements hypervisor.Snapshotter.
func (b *Backend) Pause(ctx context.Context, vm hypervisor.VMRef) error {
	return b.action(ctx, vm, "/vm.pause")
}

// Resume implements hypervisor.Snapshotter.
func (b *Backend) Resume(ctx context.Context, vm hypervisor.VMRef) error {
	return b.action(ctx, vm, "/vm.resume")
}

func (b *Backend) action(ctx context.Context, vm hypervisor.VMRef, path string) error {
	if !b.Alive(vm) {
		return fmt.Errorf("VM %s: %s: %w", vm.ID, path[1:], hypervisor.ErrNotRunning)
	}
	if err := newAPI(vm.RunDir).put(ctx, path, nil); err != nil {
		return fmt.Errorf("VM %s: %w", vm.ID, err)
	}
	return nil
}

// SaveState implements hypervisor.Snapshotter: CH writes config.json, state.json and
// memory-ranges into dir itself. The call is single-shot: a repeated snapshot would
// overwrite a half-written one.
func (b *Backend) SaveState(ctx context.Context, vm hypervisor.VMRef, dir string) error {
	if !b.Alive(vm) {
		return fmt.Errorf("VM %s: snapshot: %w", vm.ID, hypervisor.ErrNotRunning)
	}
	if err := newAPI(vm.RunDir).once(ctx, "/vm.snapshot", map[string]string{"destination_url": "file://" + dir}); err != nil {
		return fmt.Errorf("VM %s: %w", vm.ID, err)
	}
	for _, name := range []string{configFile, stateFile, memoryFile} {
		if !fileExists(dir + "/" + name) {
			return fmt.Errorf("VM %s: vm.snapshot wrote no %s into %s", vm.ID, name, dir)
		}
	}
	return nil
}
