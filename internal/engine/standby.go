package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cocoonstack/cocoon/internal/crashpoint"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/store"
)

// A snapshot's standby pool keeps clones made ahead of demand: each is a whole clone (its
// disks, network, fresh identity, hypervisor resumed from the snapshot), paused once ready and
// recorded in state standby. `vm clone` of the snapshot with options that resolve to the same
// configuration takes one over: rename, record running, resume. A cold clone cannot be faster
// than its hypervisor's start (QEMU answers QMP ~70 ms after exec here); a take-over is one
// index write and one QMP command. The pool is refilled afterwards, off the clone's path.

// CrashTakenOver is the crash point between recording a taken-over standby running and
// resuming its guest.
const CrashTakenOver = "standby-taken-over"

// MaxStandby bounds a snapshot's pool: each standby holds a hypervisor and its memory.
const MaxStandby = 64

// StandbyStatus is a snapshot's pool and the standbys it has ready.
type StandbyStatus struct {
	Snapshot   string                `json:"snapshot"`
	SnapshotID string                `json:"snapshot_id"`
	Pool       *snapshot.StandbyPool `json:"pool"`
	Ready      []string              `json:"ready"` // IDs of the standby VMs
}

func (e *Engine) withStandbyLock(ctx context.Context, snapID string, fn func() error) error {
	l := store.RecordLock(e.vmDir, "standby", snapID)
	if err := l.Lock(ctx); err != nil {
		return fmt.Errorf("lock standby pool of snapshot %s: %w", snapID, err)
	}
	defer l.Unlock() //nolint:errcheck
	return fn()
}

// SetStandby sets the standby pool of snapshot ref (pool.Count 0 removes it) and fills it.
// The pool's options are checked by planning a clone before anything is recorded.
func (e *Engine) SetStandby(ctx context.Context, ref string, pool snapshot.StandbyPool) (*StandbyStatus, error) {
	if pool.Count < 0 || pool.Count > MaxStandby {
		return nil, fmt.Errorf("standby count %d is out of range: give 0 (no pool) to %d", pool.Count, MaxStandby)
	}
	snap, err := e.snaps.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	var st *StandbyStatus
	err = e.withStandbyLock(ctx, snap.ID, func() error {
		var p *snapshot.StandbyPool
		if pool.Count > 0 {
			p = &pool
			if _, err := e.planClone(ctx, poolOptions(snap.ID, p)); err != nil {
				return err
			}
		}
		if err := e.snaps.SetStandby(ctx, snap.ID, p); err != nil {
			return err
		}
		st, err = e.fillLocked(ctx, snap.ID)
		return err
	})
	return st, err
}

// FillStandby brings snapshot ref's pool to its count: standbys that died or no longer match
// the pool are removed, missing ones are made.
func (e *Engine) FillStandby(ctx context.Context, ref string) (*StandbyStatus, error) {
	snap, err := e.snaps.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	var st *StandbyStatus
	err = e.withStandbyLock(ctx, snap.ID, func() error {
		st, err = e.fillLocked(ctx, snap.ID)
		return err
	})
	return st, err
}

// StandbyOf reports snapshot ref's pool without changing it.
func (e *Engine) StandbyOf(ctx context.Context, ref string) (*StandbyStatus, error) {
	snap, err := e.snaps.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	st := &StandbyStatus{Snapshot: snap.Name, SnapshotID: snap.ID, Pool: snap.Standby, Ready: []string{}}
	all, err := e.snapshotVMs(ctx, func(*VM) {})
	for i := range all {
		if vm := &all[i]; vm.State == StateStandby && vm.StandbyFor == snap.ID && e.alive(vm) {
			st.Ready = append(st.Ready, vm.ID)
		}
	}
	return st, err
}

// fillLocked runs under the pool's lock, so only leftovers of a crashed fill are in state creating.
func (e *Engine) fillLocked(ctx context.Context, snapID string) (*StandbyStatus, error) {
	snap, err := e.snaps.Resolve(ctx, snapID)
	if errors.Is(err, snapshot.ErrNotFound) { // removed meanwhile: so are its standbys
		_, stale, serr := e.standbys(ctx, snapID, nil)
		if serr == nil {
			serr = e.removeStandbys(ctx, snapID, stale)
		}
		return nil, errors.Join(err, serr)
	}
	if err != nil {
		return nil, err
	}
	st := &StandbyStatus{Snapshot: snap.Name, SnapshotID: snap.ID, Pool: snap.Standby, Ready: []string{}}
	var want *VMConfig
	if snap.Standby != nil {
		p, err := e.planClone(ctx, poolOptions(snap.ID, snap.Standby))
		if err != nil {
			return st, fmt.Errorf("standby pool of snapshot %s: %w", snap.Name, err)
		}
		want = &p.vm.Config
	}
	ready, stale, err := e.standbys(ctx, snap.ID, want)
	if err != nil {
		return st, err
	}
	count := 0
	if snap.Standby != nil {
		count = snap.Standby.Count
	}
	if len(ready) > count {
		ready, stale = ready[:count], append(stale, ready[count:]...)
	}
	if err := e.removeStandbys(ctx, snap.ID, stale); err != nil {
		return st, err
	}
	for len(ready) < count {
		o := poolOptions(snap.ID, snap.Standby)
		o.standby = true
		vm, err := e.Clone(ctx, o)
		if err != nil {
			st.Ready = ready
			return st, fmt.Errorf("make a standby clone of snapshot %s: %w", snap.Name, err)
		}
		ready = append(ready, vm.ID)
	}
	st.Ready = ready
	return st, nil
}

func poolOptions(snapID string, p *snapshot.StandbyPool) CloneOptions {
	return CloneOptions{Snapshot: snapID, CPU: p.CPU, Memory: p.Memory, Storage: p.Storage, NICs: p.NICs,
		Network: p.Network, Bridge: p.Bridge, NoDirectIO: p.NoDirectIO}
}

// standbys splits the snapshot's standby records into those ready for want (alive, in state
// standby, configured as want) and the rest. want nil: none is ready.
func (e *Engine) standbys(ctx context.Context, snapID string, want *VMConfig) (ready, stale []string, err error) {
	all, err := e.snapshotVMs(ctx, func(*VM) {})
	for i := range all {
		vm := &all[i]
		switch {
		case vm.StandbyFor != snapID:
		case want != nil && vm.State == StateStandby && vm.Config == *want && e.alive(vm):
			ready = append(ready, vm.ID)
		default:
			stale = append(stale, vm.ID)
		}
	}
	return ready, stale, err
}

// removeStandbys stops and removes the given standbys of snapID; a VM taken over meanwhile
// (no longer a standby of it) is left alone.
func (e *Engine) removeStandbys(ctx context.Context, snapID string, ids []string) error {
	var errs []error
	for _, id := range ids {
		err := e.withVMLock(ctx, id, func() error {
			vm, err := e.getVM(ctx, id)
			if errors.Is(err, ErrNotFound) || err == nil && vm.StandbyFor != snapID {
				return nil
			}
			if err == nil {
				err = e.release(ctx, id, true)
			}
			if err == nil {
				err = e.dropRecord(ctx, id)
			}
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("remove standby %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// pauseStandby pauses a standby's guest once it runs. The pause marker goes first: if this
// command dies before the VM is recorded, the next command on it resumes the guest; once
// recorded, the marker stays until a take-over resumes it, and covers a take-over that dies
// between recording the VM running and resuming it.
func (e *Engine) pauseStandby(ctx context.Context, sn hypervisor.Snapshotter, vm *VM, ref hypervisor.VMRef) error {
	if err := markPaused(vm, "standby"); err != nil {
		return err
	}
	if err := sn.Pause(ctx, ref); err != nil {
		return fmt.Errorf("pause standby %s: %w", vm.ID, err)
	}
	return nil
}

// claimStandby takes over a ready standby of the planned clone's snapshot and configuration,
// or returns nil when none is ready (the caller clones cold). Standbys another command holds
// are skipped, never waited for.
func (e *Engine) claimStandby(ctx context.Context, p *clonePlan, name string) (*VM, error) {
	var ids []string
	err := e.vms.View(ctx, func(x *vmIndex) error {
		for id, vm := range x.VMs {
			if vm.State == StateStandby && vm.StandbyFor == p.snap.ID && vm.Config == p.vm.Config {
				ids = append(ids, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		l := e.vmLock(id)
		if l.TryLock() != nil {
			continue
		}
		vm, err := e.takeOver(ctx, id, p.snap.ID, p.sn, name)
		l.Unlock() //nolint:errcheck
		if vm != nil || err != nil {
			return vm, err
		}
	}
	return nil, nil
}

// takeOver turns standby id into a running VM named name ("" keeps its name); the caller holds
// its lock. It returns nil, nil when the standby cannot serve (gone, dead, or its guest would
// not resume: then it is removed).
func (e *Engine) takeOver(ctx context.Context, id, snapID string, sn hypervisor.Snapshotter, name string) (*VM, error) {
	sb, err := e.getVM(ctx, id)
	if err != nil || sb.State != StateStandby || sb.StandbyFor != snapID || !e.alive(sb) {
		return nil, nil //nolint:nilerr // not a usable standby: clone cold
	}
	var vm VM
	err = e.vms.Update(ctx, func(x *vmIndex) error {
		r := x.VMs[id]
		if name != "" && name != r.Name {
			if other, taken := x.Names[name]; taken {
				return fmt.Errorf("VM name %q already exists (id %s): choose another --name or remove it", name, other)
			}
			if err := checkNotAnID(x, name); err != nil {
				return err
			}
			delete(x.Names, r.Name)
			x.Names[name], r.Name = id, name
		}
		now := time.Now().UTC()
		r.State, r.StandbyFor, r.StartedAt, r.CreatedAt, r.UpdatedAt = StateRunning, "", &now, now, now
		vm = *r.clone()
		return nil
	})
	if err != nil {
		return nil, err
	}
	crashpoint.At(CrashTakenOver)
	if name != "" && name != sb.Name {
		err = e.renameCidata(&vm)
	}
	if err == nil {
		err = sn.Resume(ctx, vm.ref())
	}
	if err != nil {
		slog.Warn("standby could not be taken over; removing it and cloning anew", "vm", id, "err", err)
		rctx := context.WithoutCancel(ctx)
		rerr := e.release(rctx, id, true)
		if rerr == nil {
			rerr = e.dropRecord(rctx, id)
		}
		if rerr != nil {
			slog.Warn("remove the standby that could not be taken over", "vm", id, "err", rerr)
		}
		return nil, nil
	}
	clearPaused(&vm)
	return &vm, nil
}
