package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// placeholderGrace is how long a creating record may exist before GC treats it as a crash leftover.
const placeholderGrace = 24 * time.Hour

// GCReport lists what a GC cycle removed, and what it left because it cannot prove that
// this root owns it (shared run/log/memory dirs, bridge TAPs).
type GCReport struct {
	Blobs        []string `json:"blobs"`
	Networks     []string `json:"networks"`
	VMDirs       []string `json:"vm_dirs"`
	Stale        []string `json:"stale_vms"`
	Snapshots    []string `json:"snapshots"`
	Unattributed []string `json:"unattributed"`
}

// GC removes what nothing references: image blobs no image, VM or snapshot uses, network
// leftovers of VMs that are gone, orphan VM directories, crashed creations, and standbys
// whose hypervisor died or whose snapshot keeps no pool any more. It holds the VM
// index lock for the whole cycle and skips the cycle if any module is busy (fail closed).
func (e *Engine) GC(ctx context.Context) (*GCReport, error) {
	l := e.vms.Lock()
	if err := l.TryLock(); err != nil {
		return nil, fmt.Errorf("gc skipped: the VM index is busy (%w): retry later", err)
	}
	defer l.Unlock() //nolint:errcheck
	x, err := e.vms.ReadUnlocked()
	if err != nil {
		return nil, err
	}
	rep := &GCReport{}
	now := time.Now()
	snaps, err := e.snaps.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: read snapshots: %w", err)
	}
	pooled := map[string]bool{}
	for _, s := range snaps {
		pooled[s.ID] = s.Standby != nil
	}
	for id, vm := range x.VMs {
		standby := vm.State == StateStandby && (!pooled[vm.StandbyFor] || !e.alive(vm))
		if !standby && (vm.State != StateCreating || now.Sub(vm.UpdatedAt) <= placeholderGrace) {
			continue
		}
		if standby && !e.stopOrphanStandby(ctx, vm) {
			continue
		}
		removed, err := e.collectStale(ctx, x, vm)
		if err != nil {
			return nil, err
		}
		if removed {
			rep.Stale = append(rep.Stale, id)
		}
	}
	if len(rep.Stale) > 0 {
		if err := e.vms.WriteUnlocked(x); err != nil {
			return nil, err
		}
	}
	live := map[string]struct{}{}
	pinned := map[string]struct{}{}
	for id, vm := range x.VMs {
		live[id] = struct{}{}
		for b := range vm.ImageBlobIDs {
			pinned[b] = struct{}{}
		}
	}
	var errs []error
	snapBlobs, err := e.snaps.BlobIDs(ctx)
	if err != nil {
		return rep, fmt.Errorf("gc: read snapshots: %w", err)
	}
	for b := range snapBlobs {
		pinned[b] = struct{}{}
	}
	if rep.Snapshots, err = e.snaps.GC(ctx); err != nil {
		errs = append(errs, fmt.Errorf("gc snapshots: %w", err))
	}
	if rep.Blobs, err = e.images.GC(ctx, pinned); err != nil {
		errs = append(errs, fmt.Errorf("gc images: %w", err))
	}
	var taps []string
	if rep.Networks, taps, err = e.net.GC(ctx, live); err != nil {
		errs = append(errs, fmt.Errorf("gc network: %w", err))
	}
	rep.Unattributed = append(rep.Unattributed, taps...)
	// Huge-page RAM dirs are left to rm: that mount is shared by every root on the host.
	dirs := []string{e.cfg.RunDir, e.cfg.LogDir}
	if err := ensurePrivateDir(e.cfg.MemoryDir); err != nil {
		errs = append(errs, fmt.Errorf("gc: %w", err)) // never walk into a planted memory dir
	} else {
		dirs = append(dirs, e.cfg.MemoryDir)
	}
	for _, dir := range dirs {
		removed, left, err := e.removeOrphanDirs(dir, live)
		rep.VMDirs = append(rep.VMDirs, removed...)
		rep.Unattributed = append(rep.Unattributed, left...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// stopOrphanStandby kills the hypervisor of a standby that is to be collected (a dead one has
// none), unless a command holds the VM; it reports whether the standby may be collected.
func (e *Engine) stopOrphanStandby(ctx context.Context, vm *VM) bool {
	if !e.alive(vm) {
		return true
	}
	b, err := e.backendOf(vm)
	if err != nil || e.busy(vm.ID) {
		return false
	}
	if err := b.Stop(ctx, vm.ref(), hypervisor.StopOptions{Force: true}); err != nil {
		slog.Warn("gc: stop orphan standby", "vm", vm.ID, "err", err)
		return false
	}
	e.awaitConsoleRelay(b, vm)
	return true
}

// collectStale removes a creating placeholder left by a crash, unless a create still holds it.
func (e *Engine) collectStale(ctx context.Context, x *vmIndex, vm *VM) (bool, error) {
	vl := e.vmLock(vm.ID)
	if vl.TryLock() != nil {
		return false, nil
	}
	defer vl.Unlock() //nolint:errcheck
	if err := e.net.Teardown(ctx, vm.ID, vm.Networks); err != nil {
		return false, fmt.Errorf("gc: release network of stale VM %s: %w", vm.ID, err)
	}
	if err := removeAll(vm.RunDir, vm.LogDir, vm.MemoryDir); err != nil {
		return false, fmt.Errorf("gc: remove stale VM %s: %w", vm.ID, err)
	}
	delete(x.VMs, vm.ID)
	if x.Names[vm.Name] == vm.ID {
		delete(x.Names, vm.Name)
	}
	return true, nil
}

// removeOrphanDirs removes subdirectories named like VM IDs that belong to no VM and carry
// this root's marker. Unmarked ones are left and listed: run, log and memory dirs may be
// shared with other roots, whose VMs this root cannot see.
func (e *Engine) removeOrphanDirs(dir string, live map[string]struct{}) (removed, left []string, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("gc: read %s: %w", dir, err)
	}
	for _, en := range entries {
		if _, ok := live[en.Name()]; ok || !en.IsDir() || !looksLikeVMID(en.Name()) {
			continue
		}
		p := filepath.Join(dir, en.Name())
		switch owner := dirOwner(p); {
		case owner == "":
			left = append(left, p+" (no root marker: not provably this root's)")
			continue
		case owner != e.rootID:
			continue // another root's VM
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, left, fmt.Errorf("gc: remove %s: %w", p, err)
		}
		removed = append(removed, p)
	}
	return removed, left, nil
}

// looksLikeVMID matches crypto/rand.Text output (26 base32 chars), so GC never touches
// directories a user put next to ours.
func looksLikeVMID(s string) bool {
	if len(s) != 26 {
		return false
	}
	for _, c := range s {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
