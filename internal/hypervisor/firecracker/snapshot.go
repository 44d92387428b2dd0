package firecracker

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// State files in a snapshot dir: the device state and a full copy of guest memory.
const (
	stateName = "vmstate"
	memName   = "mem"
)

// maxStateSize bounds an imported vmstate: device state of a few vCPUs and devices is far
// smaller; a larger file is not one of ours.
const maxStateSize = 64 << 20

func statePath(dir string) string { return filepath.Join(dir, stateName) }
func memPath(dir string) string   { return filepath.Join(dir, memName) }

// StateFile implements hypervisor.Snapshotter.
func (b *Backend) StateFile(name string) bool { return name == stateName || name == memName }

// SaveState implements hypervisor.Snapshotter: a full snapshot of the paused VM into dir.
func (b *Backend) SaveState(ctx context.Context, vm hypervisor.VMRef, dir string) error {
	call := rest.Call{Method: http.MethodPut, Path: "/snapshot/create", Once: true, Timeout: snapshotTimeout,
		Body: snapshotCreate{SnapshotPath: statePath(dir), MemFilePath: memPath(dir), SnapshotType: "Full"}}
	if err := api(vm.RunDir).Do(ctx, call); err != nil {
		return fmt.Errorf("snapshot VM %s: %w", vm.ID, err)
	}
	return nil
}

// StartFromSnapshot implements hypervisor.Snapshotter. FC cannot change vCPUs, memory or the
// number of NICs of a loaded snapshot (Capabilities says so; this is the backstop), and the
// guest keeps the MACs it was saved with: only the TAPs behind them are the clone's.
func (b *Backend) StartFromSnapshot(ctx context.Context, spec hypervisor.VMSpec, src hypervisor.SnapshotSource) (hypervisor.Process, error) {
	switch {
	case spec.CPUs != src.CPUs:
		return hypervisor.Process{}, fmt.Errorf("--cpu %d not supported: Firecracker cannot change CPU after snapshot/load (snapshot has %d)", spec.CPUs, src.CPUs)
	case spec.MemoryBytes != src.MemoryBytes:
		return hypervisor.Process{}, fmt.Errorf("--memory not supported: Firecracker cannot change memory after snapshot/load (snapshot has %d MiB)", src.MemoryBytes>>20)
	case len(spec.NICs) != len(src.MACs):
		return hypervisor.Process{}, fmt.Errorf("--nics %d not supported: Firecracker cannot add or remove NICs after snapshot/load (snapshot has %d)", len(spec.NICs), len(src.MACs))
	}
	if err := b.validate(spec, false); err != nil {
		return hypervisor.Process{}, err
	}
	if err := b.CheckState(src); err != nil {
		return hypervisor.Process{}, err
	}
	load := loadCall(spec, src.Dir)
	p, err := b.launch(ctx, spec, func(ctx context.Context, c *rest.Client) error {
		if err := c.Do(ctx, load); err != nil {
			return err
		}
		// The guest runs only once FC's own account of its devices is this VM's.
		if err := verifyDevices(ctx, c, spec); err != nil {
			return err
		}
		return c.Do(ctx, setVMState("Resumed"))
	})
	if err != nil {
		return p, fmt.Errorf("restore %w", err)
	}
	return p, nil
}

// CheckState implements hypervisor.Snapshotter. The vmstate is FC's own versioned binary
// format, which FC checks (CRC, version) on load and we do not parse. What of it reaches the
// host is decided at every load instead: the TAPs are overridden (network_overrides), drives
// and vsock socket are named relative to the clone's run dir (drives.go), and before the
// guest may run, FC's own list of the loaded devices must be exactly this VM's
// (verifyDevices), else the VM is killed unresumed.
// Here: both files are plain files, the vmstate is of sane size and the memory file is
// exactly the snapshot's guest memory.
func (b *Backend) CheckState(src hypervisor.SnapshotSource) error {
	st, err := regularFile(statePath(src.Dir))
	if err != nil {
		return err
	}
	if st.Size() == 0 || st.Size() > maxStateSize {
		return fmt.Errorf("snapshot state %s is %d bytes: not a Firecracker vmstate (empty or over %d MiB)", statePath(src.Dir), st.Size(), maxStateSize>>20)
	}
	if st, err = regularFile(memPath(src.Dir)); err != nil {
		return err
	}
	if st.Size() != src.MemoryBytes {
		return fmt.Errorf("snapshot memory file %s is %d bytes, but the snapshot's VM has %d", memPath(src.Dir), st.Size(), src.MemoryBytes)
	}
	return nil
}

func regularFile(path string) (os.FileInfo, error) {
	st, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot state file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("snapshot state file %s is not a regular file", path)
	}
	return st, nil
}
