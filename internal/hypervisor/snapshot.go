package hypervisor

import "context"

// Snapshotter is implemented by backends that can save and resume running VMs.
//
// A snapshot is one directory: the engine keeps the hypervisor-neutral manifest and the disk
// payloads there, and the backend owns the names StateFile accepts (QEMU a state file and a
// memory image, Cloud Hypervisor config.json, state.json and memory ranges, Firecracker a
// vmstate and a memory file). The directory is flat so that export and import stay one closed
// set of plain names.
type Snapshotter interface {
	Pause(ctx context.Context, vm VMRef) error
	Resume(ctx context.Context, vm VMRef) error
	// SaveState writes the device state and guest memory of a PAUSED VM into dir, under names
	// StateFile accepts. The VM stays paused; the caller resumes it.
	SaveState(ctx context.Context, vm VMRef, dir string) error
	// StartFromSnapshot launches a new hypervisor process for spec that resumes the snapshot.
	// The process starts with the snapshot's device layout, then the backend grows it to spec
	// (vCPUs, memory, where Capabilities allow), gives it spec's disks (the clone's own copies,
	// in the snapshot's order) and NICs (hot-swapped when MAC or TAP differ from src.MACs), and
	// resumes the guest. Same contract as Start: returns once running; on failure nothing is
	// left. It never writes to src.Dir: clones of one snapshot run side by side.
	StartFromSnapshot(ctx context.Context, spec VMSpec, src SnapshotSource) (Process, error)
	// CheckState checks a snapshot's state files that may come from another host (an import)
	// without launching anything: their format, that every value that would reach the
	// hypervisor is in the allowed set, and that they agree with src.
	CheckState(src SnapshotSource) error
	// StateFile reports whether name is one SaveState writes: the closed set an imported
	// snapshot directory is held to.
	StateFile(name string) bool
}

// SnapshotSource describes a saved VM, as recorded when it was snapshotted.
type SnapshotSource struct {
	Dir string // the snapshot directory holding the state files
	// CPUs is the VM's vCPU count when it was snapshotted (its spec's CPUs, including any
	// vCPUs hot-added on an earlier clone); spec.CPUs may be larger, up to MaxCPUs.
	CPUs        int
	MaxCPUs     int      // the snapshotted VM's MaxCPUs (0 = CPUs)
	MemoryBytes int64    // must equal spec.MemoryBytes unless Capabilities.MemoryGrowOnClone
	MACs        []string // NIC MACs inside the saved state, in order; spec.NICs has at least as many
	// OnDemand loads guest memory lazily (`--on-demand`: Cloud Hypervisor's memory_restore_mode
	// OnDemand, pages faulted in from the snapshot as the guest touches them). Backends that
	// always map the snapshot's memory lazily (QEMU, Firecracker) ignore it.
	OnDemand bool
}
