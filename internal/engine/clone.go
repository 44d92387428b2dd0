package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/network"
	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// CloneOptions are the choices for a clone; zero values inherit from the snapshot.
type CloneOptions struct {
	Snapshot      string
	Name          string
	CPU           int
	Memory        int64
	Storage       int64
	NICs          int
	QueueSize     int
	DiskQueueSize int
	Network       string
	Bridge        string
	NoDirectIO    bool
	Pull          bool
	Platform      string // if set, the snapshot's platform must be this one
	// OnDemand loads guest memory lazily where the backend offers a choice (Cloud Hypervisor).
	OnDemand bool
	// Refill is called with the snapshot's ID when the clone took over a standby, so the
	// caller can have the pool refilled without waiting for it.
	Refill  func(snapshotID string)
	standby bool // make a standby for the snapshot's pool, not a running clone
}

// resources are the sizes a clone or restore asks for, checked against the snapshot.
type resources struct {
	cpu             int
	memory, storage int64
}

// checkGrowth refuses shrinking below the snapshot and growth the backend cannot do.
func checkGrowth(r resources, m *snapshot.Manifest, caps hypervisor.Capabilities, backend string) error {
	switch {
	case r.cpu < m.CPU:
		return fmt.Errorf("--cpu %d is below the snapshot's %d: resources can grow, not shrink", r.cpu, m.CPU)
	case r.cpu > runtime.NumCPU():
		return fmt.Errorf("--cpu %d exceeds the host's %d cores", r.cpu, runtime.NumCPU())
	case r.cpu > m.CPU && (!caps.ResizeOnClone || r.cpu > m.MaxCPU):
		return fmt.Errorf("--cpu %d: hypervisor %s can add vCPUs only up to %d on this snapshot", r.cpu, backend, min(m.MaxCPU, m.CPU))
	case r.memory < m.Memory:
		return fmt.Errorf("--memory %s is below the snapshot's %s: resources can grow, not shrink", humanBytes(r.memory), humanBytes(m.Memory))
	case r.memory > m.Memory && !caps.MemoryGrowOnClone:
		return fmt.Errorf("--memory %s: hypervisor %s cannot grow memory of a snapshot (keep %s)", humanBytes(r.memory), backend, humanBytes(m.Memory))
	case r.storage < m.Storage:
		return fmt.Errorf("--storage %s is below the snapshot's %s: resources can grow, not shrink", humanBytes(r.storage), humanBytes(m.Storage))
	}
	return nil
}

// Clone creates and runs a new VM resuming from a snapshot, with a fresh network identity.
// When the snapshot keeps a standby pool with a clone of the same configuration ready, that
// clone is taken over instead (see claimStandby) and o.Refill is told.
func (e *Engine) Clone(ctx context.Context, o CloneOptions) (*VM, error) {
	t0 := time.Now()
	p, err := e.planClone(ctx, o)
	if err != nil {
		return nil, err
	}
	if p.snap.Standby != nil && !o.standby && !o.OnDemand {
		vm, err := e.claimStandby(ctx, p, o.Name)
		if vm != nil && o.Refill != nil {
			o.Refill(p.snap.ID)
		}
		if vm != nil || err != nil {
			slog.Debug("clone took a standby", "snapshot", p.snap.Name, "took", time.Since(t0), "err", err)
			return vm, err
		}
	}
	return e.cloneCold(ctx, p, o, t0)
}

// clonePlan is a clone checked and configured, nothing made yet.
type clonePlan struct {
	snap *snapshot.Snapshot
	b    hypervisor.Backend
	sn   hypervisor.Snapshotter
	img  *image.Image
	req  network.Request
	vm   *VM // the record to create: configuration, dirs and identity, state creating
}

// planClone checks o against the snapshot and the host and builds the new VM's record.
func (e *Engine) planClone(ctx context.Context, o CloneOptions) (*clonePlan, error) {
	snap, err := e.snaps.Resolve(ctx, o.Snapshot)
	if err != nil {
		return nil, err
	}
	m := &snap.Manifest
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", snap.Name, err)
	}
	b, ok := e.backends[m.Hypervisor]
	if !ok {
		return nil, fmt.Errorf("snapshot %s needs hypervisor %s, which this build does not support", snap.Name, m.Hypervisor)
	}
	sn, ok := b.(hypervisor.Snapshotter)
	if !ok {
		return nil, fmt.Errorf("hypervisor %s cannot clone snapshots", b.Name())
	}
	if err := checkClonePlatform(o.Platform, snap.Name, m.Platform); err != nil {
		return nil, err
	}
	if err := checkArch(b, platform.Or(m.Platform)); err != nil {
		return nil, err
	}
	r := resources{cpu: or(o.CPU, m.CPU), memory: or64(o.Memory, m.Memory), storage: or64(o.Storage, m.Storage)}
	if err := checkGrowth(r, m, b.Capabilities(), b.Name()); err != nil {
		return nil, err
	}
	nics := or(o.NICs, m.NICs)
	switch {
	case nics < m.NICs:
		return nil, fmt.Errorf("--nics %d is below the snapshot's %d: resources can grow, not shrink", nics, m.NICs)
	case nics > m.NICs && !b.Capabilities().NICHotSwap:
		return nil, fmt.Errorf("--nics %d: hypervisor %s cannot add NICs to a snapshot's %d", nics, b.Name(), m.NICs)
	case o.QueueSize != 0 && o.QueueSize != m.QueueSize || o.DiskQueueSize != 0 && o.DiskQueueSize != m.DiskQueueSize:
		return nil, fmt.Errorf("--queue-size/--disk-queue-size must match the snapshot's (%d/%d): the saved devices keep their rings", m.QueueSize, m.DiskQueueSize)
	case o.Bridge != "" && o.Network != "":
		return nil, fmt.Errorf("--bridge and --network are mutually exclusive: pick one")
	}
	if o.Name != "" {
		if err := validateName(o.Name); err != nil {
			return nil, err
		}
	}
	img, err := e.cloneImage(ctx, snap, o.Pull)
	if err != nil {
		return nil, err
	}
	req := network.Request{NICs: nics, Queues: nicQueues(b.Capabilities(), r.cpu), QueueSize: m.QueueSize, Network: o.Network, Bridge: o.Bridge}
	if req.Network == "" && req.Bridge == "" {
		req.Network = m.Network
	}
	if nics > 0 {
		if err := e.net.Validate(req); err != nil {
			return nil, err
		}
	}

	id := rand.Text()
	now := time.Now().UTC()
	vm := &VM{ID: id, Name: o.Name, Hypervisor: b.Name(), State: StateCreating,
		Config: VMConfig{CPU: r.cpu, MaxCPU: m.MaxCPU, Memory: r.memory, Storage: r.storage, NICs: nics, QueueSize: m.QueueSize,
			DiskQueueSize: m.DiskQueueSize, Image: m.Image, ImageDigest: m.ImageDigest, ImageKind: m.ImageKind,
			Network: req.Network, Bridge: o.Bridge, NoDirectIO: m.NoDirectIO || o.NoDirectIO, Windows: m.Windows, Accel: m.Accel, NoAgent: !hasSnapshotRole(m, roleAgent), Platform: m.Platform},
		ImageBlobIDs: setOf(m.ImageBlobIDs), FirstBooted: true, CidataAttached: hasSnapshotRole(m, "cidata"),
		RunDir: filepath.Join(e.cfg.RunDir, id), LogDir: filepath.Join(e.cfg.LogDir, id), MemoryDir: filepath.Join(e.cfg.MemoryDir, id),
		CreatedAt: now, UpdatedAt: now}
	return &clonePlan{snap: snap, b: b, sn: sn, img: img, req: req, vm: vm}, nil
}

// cloneCold makes the planned clone: its own disks, network and hypervisor process.
func (e *Engine) cloneCold(ctx context.Context, p *clonePlan, o CloneOptions, t0 time.Time) (*VM, error) {
	snap, b, img, vm, id := p.snap, p.b, p.img, p.vm, p.vm.ID
	if o.standby {
		vm.StandbyFor = snap.ID
	}
	if err := e.checkPlan(b, vm, func(c *VM) error { return e.planFromSnapshot(c, snap, img, c.RunDir) }); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(e.cfg.MemoryDir); err != nil {
		return nil, err
	}
	slog.Debug("clone checked", "snapshot", snap.Name, "took", time.Since(t0))
	nameBase := "cocoon-clone-" + strings.ToLower(id[:8])
	var copied []string
	steps := []step{
		{"reserve record", func(ctx context.Context) error { return e.reserve(ctx, vm, nameBase) }, func(ctx context.Context) error { return e.dropRecord(ctx, id) }},
		{"create directories", func(context.Context) error { return e.makeVMDirs(vm.RunDir, vm.LogDir) }, func(context.Context) error { return removeAll(vm.RunDir, vm.LogDir, vm.MemoryDir) }},
		{"configure network", func(ctx context.Context) error { return e.setupNetwork(ctx, vm, p.req) }, func(ctx context.Context) error { return e.net.Teardown(ctx, id, vm.Networks) }},
		// The copies are flushed while the hypervisor starts (resumeFrom), before the record
		// that relies on them says running: until then a crash leaves a creating VM for gc.
		{"copy disks", func(context.Context) (err error) { copied, err = e.copyDisks(vm, snap, img, vm.RunDir); return err }, nil},
		{"new cloud-init identity", func(context.Context) error { return e.freshCidata(vm) }, nil},
		{"resume from snapshot", func(ctx context.Context) error {
			return e.resumeFrom(ctx, p.sn, vm, snap, resumeOptions{onDemand: o.OnDemand, standby: o.standby}, copied...)
		}, nil},
	}
	if err := e.withVMLock(ctx, id, func() error { return runSteps(ctx, "clone "+snap.Name, steps) }); err != nil {
		return nil, err
	}
	return e.getVM(ctx, id)
}

func hasSnapshotRole(m *snapshot.Manifest, role string) bool {
	for _, d := range m.Disks {
		if d.Role == role {
			return true
		}
	}
	return false
}

// cloneImage finds the snapshot's base image, pulling it by its recorded digest when allowed.
func (e *Engine) cloneImage(ctx context.Context, snap *snapshot.Snapshot, pull bool) (*image.Image, error) {
	m := &snap.Manifest
	img, err := e.images.Resolve(ctx, m.Image)
	if err == nil && (m.ImageDigest == "" || img.Digest == m.ImageDigest) {
		return img, nil
	}
	if err == nil {
		slog.Warn("image tag moved since the snapshot; using the recorded digest", "image", m.Image, "snapshot_digest", m.ImageDigest, "local_digest", img.Digest)
		if byDigest, derr := e.images.Resolve(ctx, m.ImageDigest); derr == nil {
			return byDigest, nil
		}
	}
	if !pull {
		return nil, fmt.Errorf("base image %s (%s) of snapshot %s is not present: pull it or clone with --pull", m.Image, m.ImageDigest, snap.Name)
	}
	ref := m.Image
	if m.ImageKind == string(image.KindOCI) && m.ImageDigest != "" {
		ref = repoOf(m.Image) + "@" + m.ImageDigest
	}
	img, _, err = e.images.PullFor(ctx, ref, m.Platform, false)
	if err != nil {
		return nil, fmt.Errorf("pull base image %s: %w", ref, err)
	}
	if m.ImageDigest != "" && img.Digest != m.ImageDigest {
		return nil, fmt.Errorf("pulled %s has digest %s, the snapshot needs %s", ref, img.Digest, m.ImageDigest)
	}
	return img, nil
}

// repoOf strips the tag or digest from an OCI reference.
func repoOf(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i]
	}
	return ref
}

// materialize rebuilds the VM's disks from the snapshot into dir: writable files are
// reflinked or sparse-copied, layers and cloud bases come from the local image store.
func (e *Engine) materialize(vm *VM, snap *snapshot.Snapshot, img *image.Image, dir string) error {
	copied, err := e.copyDisks(vm, snap, img, dir)
	if err != nil {
		return err
	}
	return disk.SyncFiles(copied...)
}

// copyDisks is materialize without making the copies durable: it returns the files the caller
// must pass to disk.SyncFiles before it records anything that relies on them.
func (e *Engine) copyDisks(vm *VM, snap *snapshot.Snapshot, img *image.Image, dir string) ([]string, error) {
	if err := e.planFromSnapshot(vm, snap, img, dir); err != nil {
		return nil, err
	}
	src := e.snaps.Dir(snap.ID)
	var copied []string
	for _, d := range vm.Disks {
		if d.Role == "layer" {
			continue
		}
		name := filepath.Base(d.Path)
		if _, err := disk.CloneFileUnsynced(d.Path, filepath.Join(src, name)); err != nil {
			return nil, fmt.Errorf("copy %s: %w", name, err)
		}
		copied = append(copied, d.Path)
		if err := e.fixDisk(vm, img, d); err != nil {
			return nil, err
		}
	}
	if img.Kind == image.KindOCI || vm.Boot.FirmwareVars == "" {
		return copied, nil
	}
	if _, err := disk.CloneFileUnsynced(vm.Boot.FirmwareVars, filepath.Join(src, snapshot.FileFirmware)); err != nil {
		return nil, fmt.Errorf("copy UEFI variables: %w", err)
	}
	return append(copied, vm.Boot.FirmwareVars), nil
}

// planFromSnapshot sets the disks and boot configuration a VM made from the snapshot gets in
// dir, without copying anything.
func (e *Engine) planFromSnapshot(vm *VM, snap *snapshot.Snapshot, img *image.Image, dir string) error {
	m := &snap.Manifest
	layers := map[string]string{}
	for _, l := range img.Layers {
		layers[layerID(l.Path)] = l.Path
	}
	vm.Disks = nil
	var topDown []string
	for _, d := range m.Disks {
		// Format and writability follow from the role, never from the manifest's say-so.
		hd := hypervisor.Disk{Role: d.Role, Serial: d.Serial, Format: hypervisor.DiskFormat(snapshot.DiskFormat(d)),
			ReadOnly: snapshot.DiskReadOnly(d), DirectIO: d.DirectIO && !vm.Config.NoDirectIO, FSType: d.FSType, MountPoint: d.MountPoint}
		if d.Role == "layer" {
			p, ok := layers[d.Layer]
			if !ok {
				return fmt.Errorf("layer %s of snapshot %s is not in image %s", d.Layer, snap.Name, img.Ref)
			}
			hd.Path = p
			topDown = append([]string{d.Serial}, topDown...)
		} else {
			hd.Path = filepath.Join(dir, d.File)
			if d.Role == roleAgent {
				topDown = append([]string{d.Serial}, topDown...)
			}
		}
		vm.Disks = append(vm.Disks, hd)
	}
	if img.Kind == image.KindOCI {
		vm.Boot = &BootConfig{KernelPath: img.KernelPath, InitrdPath: img.InitrdPath, Cmdline: kernelCmdline(vm, e.caps(vm), topDown, e.cfg.DNS)}
		return nil
	}
	vm.Boot = e.uefiBoot(vm, dir)
	return nil
}

// fixDisk points a copied qcow2 overlay at this host's base blob and grows the COW disk.
func (e *Engine) fixDisk(vm *VM, img *image.Image, d hypervisor.Disk) error {
	if d.Role != "cow" {
		return nil
	}
	if d.Format == hypervisor.FormatQcow2 {
		if err := disk.RebaseQcow2(d.Path, img.BlobPath); err != nil {
			return err
		}
		if err := checkOverlay(d.Path, img.BlobPath); err != nil {
			return err
		}
	}
	size, err := virtualSize(d)
	if err != nil {
		return err
	}
	if vm.Config.Storage > size {
		return disk.Resize(d.Path, string(d.Format), vm.Config.Storage)
	}
	return nil
}

// virtualSize is a disk's guest-visible size: a raw file's own size (no qemu-img process on
// the clone path), else what qemu-img reports.
func virtualSize(d hypervisor.Disk) (int64, error) {
	if d.Format == hypervisor.FormatRaw {
		fi, err := os.Stat(d.Path)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	info, err := disk.Info(d.Path, string(d.Format))
	return info.VirtualSize, err
}

// resumeOptions tune resumeFrom.
type resumeOptions struct {
	onDemand bool // lazy memory loading where the backend has a choice
	standby  bool // pause the guest once resumed and record the VM as a standby
}

// resumeFrom starts the VM's hypervisor from the snapshot's state and records it running.
// The unsynced files are flushed meanwhile; the VM is recorded running only once they are
// durable, and its hypervisor is stopped when they cannot be made so.
func (e *Engine) resumeFrom(ctx context.Context, sn hypervisor.Snapshotter, vm *VM, snap *snapshot.Snapshot, o resumeOptions, unsynced ...string) error {
	synced := make(chan error, 1)
	go func() { synced <- disk.SyncFiles(unsynced...) }()
	spec, files, err := e.buildSpec(vm, vm.CidataAttached)
	defer closeFiles(files)
	if err == nil {
		err = e.makeMemoryDir(spec.MemoryDir)
	}
	if err == nil {
		err = e.mergeMemory()
	}
	if err != nil {
		<-synced
		return err
	}
	src := snapshotSource(e.snaps.Dir(snap.ID), &snap.Manifest)
	src.OnDemand = o.onDemand
	proc, err := sn.StartFromSnapshot(ctx, spec, src)
	serr := <-synced
	if err != nil {
		return err
	}
	ref := hypervisor.VMRef{ID: vm.ID, RunDir: vm.RunDir, PID: proc.PID, StartTime: proc.StartTime}
	if serr != nil {
		serr = fmt.Errorf("flush disks of VM %s: %w", vm.ID, serr)
	} else if o.standby {
		serr = e.pauseStandby(ctx, sn, vm, ref)
	}
	if serr != nil {
		if b, ok := e.backends[vm.Hypervisor]; ok {
			if stopErr := b.Stop(context.WithoutCancel(ctx), ref, hypervisor.StopOptions{Force: true}); stopErr != nil {
				slog.Warn("stop hypervisor after a failed clone", "vm", vm.ID, "err", stopErr)
			}
		}
		return serr
	}
	vm.State, vm.PID, vm.PIDStart, vm.Accel, vm.DiskAIO, vm.LastError = StateRunning, proc.PID, proc.StartTime, proc.Accel, proc.DiskAIO, ""
	now := time.Now().UTC()
	vm.StartedAt = &now
	if o.standby {
		vm.State, vm.StartedAt = StateStandby, nil
	}
	_, err = e.updateVM(ctx, vm.ID, func(r *VM) error { *r = *vm; return nil })
	return err
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func or(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func or64(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}
