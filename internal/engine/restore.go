package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// RestoreOptions may grow the VM; zero values keep its current sizes.
type RestoreOptions struct {
	CPU     int
	Memory  int64
	Storage int64
	// OnDemand loads guest memory lazily where the backend offers a choice (Cloud Hypervisor).
	OnDemand bool
}

// Restore rolls a running VM back to one of its own snapshots, keeping its network identity.
// Everything is staged before the running process is touched, so a failure while staging
// leaves the VM as it was.
func (e *Engine) Restore(ctx context.Context, vmRef, snapRef string, o RestoreOptions) (*VM, error) {
	ids, err := e.resolveIDs(ctx, []string{vmRef})
	if err != nil {
		return nil, err
	}
	snap, err := e.snaps.Resolve(ctx, snapRef)
	if err != nil {
		return nil, err
	}
	var out *VM
	err = e.withVMLock(ctx, ids[0], func() error {
		vm, err := e.getVM(ctx, ids[0])
		if err != nil {
			return err
		}
		if err := checkTransition("restore", vm); err != nil || !e.alive(vm) {
			return fmt.Errorf("VM %s is not running: restore works on a running VM (use vm clone for a stopped one)", vm.Name)
		}
		b, sn, err := e.snapshotter(vm)
		if err != nil {
			return err
		}
		m := &snap.Manifest
		if err := m.Validate(); err != nil {
			return fmt.Errorf("snapshot %s: %w", snap.Name, err)
		}
		switch {
		case snap.SourceVM != vm.ID:
			return fmt.Errorf("snapshot %s was not taken from VM %s: restore only takes the VM's own snapshots (use vm clone)", snap.Name, vm.Name)
		case len(vm.Networks) != m.NICs:
			return fmt.Errorf("VM %s has %d NICs, snapshot %s has %d: the NIC count must match", vm.Name, len(vm.Networks), snap.Name, m.NICs)
		}
		r := resources{cpu: or(o.CPU, vm.Config.CPU), memory: or64(o.Memory, vm.Config.Memory), storage: or64(o.Storage, vm.Config.Storage)}
		if err := checkGrowth(r, m, b.Capabilities(), b.Name()); err != nil {
			return err
		}
		img, err := e.cloneImage(ctx, snap, false)
		if err != nil {
			return err
		}
		next := *vm
		next.Config.CPU, next.Config.Memory, next.Config.Storage = r.cpu, r.memory, r.storage
		next.CidataAttached = hasSnapshotRole(m, "cidata")
		if err := e.checkPlan(b, &next, func(c *VM) error { return e.planFromSnapshot(c, snap, img, c.RunDir) }); err != nil {
			return err
		}
		staging := filepath.Join(vm.RunDir, "restore-staging")
		if err := os.RemoveAll(staging); err != nil {
			return err
		}
		defer os.RemoveAll(staging) //nolint:errcheck
		if err := mkdirs(staging); err != nil {
			return err
		}
		if err := e.materialize(&next, snap, img, staging); err != nil {
			return fmt.Errorf("stage snapshot %s: %w (VM %s untouched)", snap.Name, err, vm.Name)
		}
		// Point of no return: replace the process and swap the staged disks in.
		if err := b.Stop(ctx, vm.ref(), hypervisor.StopOptions{Force: true}); err != nil {
			return fmt.Errorf("stop VM %s for restore: %w", vm.Name, err)
		}
		if err := swapIn(&next, staging, vm.RunDir); err != nil {
			return e.markError(ctx, vm, fmt.Errorf("restore %s: %w", vm.Name, err))
		}
		if err := e.resumeFrom(ctx, sn, &next, snap, resumeOptions{onDemand: o.OnDemand}); err != nil {
			return e.markError(ctx, vm, fmt.Errorf("restore %s: %w", vm.Name, err))
		}
		out = &next
		return nil
	})
	return out, err
}

// swapIn renames the staged files into the run dir and repoints the disk paths.
func swapIn(vm *VM, staging, runDir string) error {
	for i, d := range vm.Disks {
		if filepath.Dir(d.Path) != staging {
			continue
		}
		dst := filepath.Join(runDir, filepath.Base(d.Path))
		if err := os.Rename(d.Path, dst); err != nil {
			return fmt.Errorf("swap in %s: %w", filepath.Base(d.Path), err)
		}
		vm.Disks[i].Path = dst
	}
	if vm.Boot != nil && vm.Boot.FirmwareVars != "" && filepath.Dir(vm.Boot.FirmwareVars) == staging {
		dst := filepath.Join(runDir, snapshot.FileFirmware)
		if err := os.Rename(vm.Boot.FirmwareVars, dst); err != nil {
			return fmt.Errorf("swap in UEFI variables: %w", err)
		}
		vm.Boot.FirmwareVars = dst
	}
	return nil
}
