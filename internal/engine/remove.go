package engine

import (
	"context"
	"fmt"
	"sync"
)

// Remove deletes a VM: its process (Force only), network, run, log and memory dirs, then the record.
func (e *Engine) Remove(ctx context.Context, id string, force bool) error {
	return e.withVMLock(ctx, id, func() error {
		if err := e.release(ctx, id, force); err != nil {
			return err
		}
		return e.dropRecord(ctx, id)
	})
}

// RemoveVMs removes the VMs refs name, concurrently (pool_size at a time), as Remove each,
// and drops their records from the index together: in one write when no other command holds
// one of the VMs (see dropGroup). Each VM's operation lock is held until its record is gone,
// so no command sees a record whose files are already deleted.
func (e *Engine) RemoveVMs(ctx context.Context, refs []string, force bool) ([]string, error) {
	ids, err := e.resolveIDs(ctx, refs)
	if err != nil {
		return nil, err
	}
	return e.removeVMs(ctx, ids, force, newDropGroup(e, len(ids)))
}

func (e *Engine) removeVMs(ctx context.Context, ids []string, force bool, g *dropGroup) ([]string, error) {
	return e.batch(ctx, ids, func(ctx context.Context, id string) (func() error, error) {
		unlock, err := e.lockVM(ctx, id, g.waitingLock)
		if err == nil {
			err = e.release(ctx, id, force)
		}
		g.released()
		if err != nil {
			if unlock != nil {
				unlock()
			}
			return nil, err
		}
		return func() error {
			defer unlock()
			return g.drop(ctx, id)
		}, nil
	})
}

// release stops (force) and frees everything a VM owns but its record; the caller holds the
// VM's lock. A forced stop is not recorded: the record is dropped next, and if this command
// dies first, reconciliation sees the process gone.
func (e *Engine) release(ctx context.Context, id string, force bool) error {
	vm, err := e.getVM(ctx, id)
	if err != nil {
		return err
	}
	if e.alive(vm) || e.adoptHypervisor(vm) {
		if !force {
			return fmt.Errorf("VM %s is running: stop it first or use rm --force", vm.Name)
		}
		if err := e.stopProcess(ctx, vm, StopOptions{Force: true}); err != nil {
			return err
		}
	}
	if err := e.net.Teardown(ctx, vm.ID, vm.Networks); err != nil {
		return fmt.Errorf("release network of VM %s: %w (retry rm)", vm.Name, err)
	}
	if err := removeAll(vm.RunDir, vm.LogDir, vm.MemoryDir, hugePageRoot(vm.ID)); err != nil {
		return fmt.Errorf("remove files of VM %s: %w (retry rm)", vm.Name, err)
	}
	return nil
}

// lockVM takes the VM's operation lock as withVMLock does and returns its release; waiting(1)
// and waiting(-1) bracket a wait for another command to let it go.
func (e *Engine) lockVM(ctx context.Context, id string, waiting func(int)) (func(), error) {
	l := e.vmLock(id)
	if l.TryLock() != nil {
		waiting(1)
		err := l.Lock(ctx)
		waiting(-1)
		if err != nil {
			return nil, fmt.Errorf("lock VM %s: %w", id, err)
		}
	}
	e.resumeIfInterrupted(ctx, id)
	return func() { l.Unlock() }, nil //nolint:errcheck
}

// dropGroup drops the records of one rm command in as few index writes as possible. The
// first remover to finish becomes the writer: it waits until every other VM of the command is
// released (or given up), then drops all released records in one write, and writes again only
// for those released meanwhile. Removers waiting for a VM lock that another command holds are
// not waited for, so the writer (which holds its own VM lock) waits only on removers that hold
// theirs and need nothing but the index and network locks: two rm commands over the same VMs
// cannot deadlock.
type dropGroup struct {
	e          *Engine
	mu         sync.Mutex
	cond       sync.Cond
	unreleased int // VMs of the command whose release has not ended
	lockWaits  int // of those, waiting for their VM's lock
	pending    []dropReq
	writing    bool
	writes     int // index writes made, for tests
}

type dropReq struct {
	id   string
	done chan error
}

func newDropGroup(e *Engine, n int) *dropGroup {
	g := &dropGroup{e: e, unreleased: n}
	g.cond.L = &g.mu
	return g
}

func (g *dropGroup) waitingLock(d int) {
	g.mu.Lock()
	g.lockWaits += d
	g.cond.Broadcast()
	g.mu.Unlock()
}

// released says one VM's release ended, well or not.
func (g *dropGroup) released() {
	g.mu.Lock()
	g.unreleased--
	g.cond.Broadcast()
	g.mu.Unlock()
}

func (g *dropGroup) drop(ctx context.Context, id string) error {
	r := dropReq{id: id, done: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, r)
	if g.writing {
		g.mu.Unlock()
		return <-r.done
	}
	g.writing = true
	for len(g.pending) > 0 {
		for g.unreleased > g.lockWaits {
			g.cond.Wait()
		}
		reqs := g.pending
		g.pending = nil
		g.writes++
		g.mu.Unlock()
		ids := make([]string, len(reqs))
		for i, q := range reqs {
			ids[i] = q.id
		}
		err := g.e.dropRecords(context.WithoutCancel(ctx), ids)
		for _, q := range reqs {
			q.done <- err
		}
		g.mu.Lock()
	}
	g.writing = false
	g.mu.Unlock()
	return <-r.done
}
