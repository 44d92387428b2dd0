package hypervisor

import "context"

// Snapshotter is implemented by backends that can save and resume running VMs.
type Snapshotter interface {
	Pause(ctx context.Context, vm VMRef) error
	Resume(ctx context.Context, vm VMRef) error
	// SaveState writes the device state of a PAUSED VM to statePath. MemoryFile in the result is
	// the host path of the VM's share=on guest-RAM file that the caller must copy while the VM
	// stays paused; empty when RAM went into the state file itself.
	SaveState(ctx context.Context, vm VMRef, statePath string) (SavedState, error)
	// StartFromSnapshot launches a new hypervisor process for spec that resumes the snapshot.
	// The process starts with the snapshot's device layout (src), then the backend grows it to
	// spec (hot-add vCPUs) and hot-swaps NICs whose MAC differs from src.MACs, then resumes the
	// guest. Same contract as Start: returns once running; on failure nothing is left.
	StartFromSnapshot(ctx context.Context, spec VMSpec, src SnapshotSource) (Process, error)
	// CheckState checks a state file from a snapshot that may come from another host (an
	// import) without launching anything: its format, that every value it would put on the
	// hypervisor's command line is in the allowed set, and that it agrees with src.
	CheckState(src SnapshotSource) error
}

// SavedState is what SaveState tells the caller to capture besides the state file.
type SavedState struct {
	MemoryFile string // guest-RAM file to copy while the VM stays paused; "" = RAM is in the state file
}

// SnapshotSource describes a saved VM, as recorded when it was snapshotted.
type SnapshotSource struct {
	StateFile  string // device state written by SaveState
	MemoryFile string // snapshot RAM file to map copy-on-write (share=off); "" = RAM is in StateFile
	// CPUs is the VM's vCPU count when it was snapshotted (its spec's CPUs, including any
	// vCPUs hot-added on an earlier clone); spec.CPUs may be larger, up to MaxCPUs.
	CPUs        int
	MaxCPUs     int      // the snapshotted VM's MaxCPUs (0 = CPUs); QEMU reads the real one from its state file
	MemoryBytes int64    // must equal spec.MemoryBytes unless Capabilities.MemoryGrowOnClone
	MACs        []string // NIC MACs inside the saved state, in order; spec.NICs has the same count
}
