package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Name under which a state file's descriptor is handed to QEMU (getfd, then fd:<name>).
const stateFDName = "cocoon-state"

// Pause implements hypervisor.Snapshotter: the vCPUs stop; devices and RAM stay as they are.
func (b *Backend) Pause(ctx context.Context, vm hypervisor.VMRef) error {
	if err := b.command(ctx, vm, "stop"); err != nil {
		return fmt.Errorf("pause VM %s: %w", vm.ID, err)
	}
	return nil
}

// Resume implements hypervisor.Snapshotter. It also resumes a VM whose state was just saved
// (QEMU's "postmigrate" state): cont re-activates the disks the migration handed over.
func (b *Backend) Resume(ctx context.Context, vm hypervisor.VMRef) error {
	if err := b.command(ctx, vm, "cont"); err != nil {
		return fmt.Errorf("resume VM %s: %w", vm.ID, err)
	}
	return nil
}

func (b *Backend) command(ctx context.Context, vm hypervisor.VMRef, command string) error {
	c, err := b.session(ctx, vm)
	if err != nil {
		return err
	}
	defer c.Close()
	return c.execute(command, nil, nil)
}

// session opens QMP on the VM's hypervisor after checking that it is really running.
func (b *Backend) session(ctx context.Context, vm hypervisor.VMRef) (*qmpClient, error) {
	h, err := hypervisor.Open(vm, b.owner(vm.RunDir))
	if err != nil {
		return nil, err
	}
	h.Close()
	return dialQMP(ctx, qmpPath(vm.RunDir))
}

// State file names inside a snapshot directory (hypervisor.Snapshotter.StateFile).
const (
	stateName  = "state"  // device state: a header recording the device layout, then QEMU's stream
	memoryName = "memory" // guest RAM image (sparse); absent when RAM is in the state stream
)

// source is a snapshot's state as QEMU opens it.
type source struct {
	hypervisor.SnapshotSource
	StateFile  string
	MemoryFile string // "" = RAM is in the state stream
}

func sourceOf(s hypervisor.SnapshotSource) source {
	src := source{SnapshotSource: s, StateFile: filepath.Join(s.Dir, stateName)}
	if mem := filepath.Join(s.Dir, memoryName); exists(mem) {
		src.MemoryFile = mem
	}
	return src
}

// StateFile implements hypervisor.Snapshotter.
func (b *Backend) StateFile(name string) bool { return name == stateName || name == memoryName }

// SaveState implements hypervisor.Snapshotter by migrating the paused VM into dir's state
// file. RAM that is a share=on file is skipped (x-ignore-shared) and copied beside it while
// the VM stays paused (a reflink where the filesystem can); other RAM goes into the stream.
// The state file starts with a header recording the device layout that StartFromSnapshot
// must rebuild (see stateHeader).
func (b *Backend) SaveState(ctx context.Context, vm hypervisor.VMRef, dir string) error {
	start := time.Now()
	statePath := filepath.Join(dir, stateName)
	l, err := b.saveState(ctx, vm, statePath)
	if err != nil {
		return fmt.Errorf("save state of VM %s to %s: %w", vm.ID, statePath, err)
	}
	if l.RAM.Shared {
		if _, err := disk.CloneFile(filepath.Join(dir, memoryName), l.RAM.File); err != nil {
			return fmt.Errorf("save memory of VM %s: %w", vm.ID, err)
		}
	}
	slog.Debug("qemu state saved", "vm", vm.ID, "dir", dir, "ram_in_state", !l.RAM.Shared, "took", time.Since(start))
	return nil
}

func (b *Backend) saveState(ctx context.Context, vm hypervisor.VMRef, statePath string) (layout, error) {
	c, err := b.session(ctx, vm)
	if err != nil {
		return layout{}, err
	}
	defer c.Close()
	l, err := readLayout(vm.RunDir)
	if err != nil {
		return l, err
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := c.execute("query-status", nil, &status); err != nil {
		return l, err
	}
	// postmigrate: paused, and saved before (without a resume in between). io-error: stopped
	// by QEMU on a failed disk write (a full disk); the failed requests are saved with the
	// device state and retried when the guest resumes.
	if status.Status != "paused" && status.Status != "postmigrate" && status.Status != "io-error" {
		return l, fmt.Errorf("VM is %s: pause it first, the state of running vCPUs is not consistent", status.Status)
	}
	caps := []map[string]any{{"capability": "x-ignore-shared", "state": l.RAM.Shared}}
	if err := c.execute("migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return l, err
	}
	// QEMU's default cap (32 MiB/s) is meant for live migration over a network; the guest
	// is paused and the target is a local file.
	if err := c.execute("migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return l, err
	}

	f, err := os.OpenFile(statePath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return l, err
	}
	err = migrateTo(ctx, c, f, l)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(statePath)
	}
	return l, err
}

// migrateTo streams the VM's state into f after the header space, then writes the header:
// a crash half-way leaves a file without a header, which StartFromSnapshot rejects.
func migrateTo(ctx context.Context, c *qmpClient, f *os.File, l layout) error {
	if _, err := f.Seek(stateHeaderSize, 0); err != nil {
		return err
	}
	if err := c.executeWithFile("getfd", map[string]string{"fdname": stateFDName}, f, nil); err != nil {
		return err
	}
	if err := c.execute("migrate", map[string]string{"uri": "fd:" + stateFDName}, nil); err != nil {
		_ = c.execute("closefd", map[string]string{"fdname": stateFDName}, nil)
		return err
	}
	if err := waitMigration(ctx, c); err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr, err := encodeStateHeader(stateHeader{Format: stateFormat, Version: stateVersion,
		StreamBytes: st.Size() - stateHeaderSize, Layout: l})
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return err
	}
	return f.Sync()
}

// waitMigration polls query-migrate until the migration (outgoing or incoming) is over.
func waitMigration(ctx context.Context, c *qmpClient) error {
	for {
		var m struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := c.execute("query-migrate", nil, &m); err != nil {
			return err
		}
		switch m.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return errors.New("migration " + m.Status + ": " + m.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration still %q: %w", m.Status, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitIncoming waits for the MIGRATION event (the "events" capability) that ends an incoming
// migration; on failure query-migrate gives the reason.
func waitIncoming(ctx context.Context, c *qmpClient) error {
	status := func(m qmpMessage) string {
		var d struct {
			Status string `json:"status"`
		}
		if m.Event != "MIGRATION" || json.Unmarshal(m.Data, &d) != nil {
			return ""
		}
		return d.Status
	}
	ev, err := c.waitEvent(func(m qmpMessage) bool {
		s := status(m)
		return s == "completed" || s == "failed" || s == "cancelled"
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("migration not over: %w", ctx.Err())
		}
		return err
	}
	if status(ev) == "completed" {
		return nil
	}
	return waitMigration(ctx, c) // reports the failure with QEMU's error-desc
}
