package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/cocoonstack/cocoon/internal/crashpoint"
	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/snapshot/archive"
)

// SaveOptions name a new snapshot.
type SaveOptions struct {
	Name        string
	Description string
}

// snapshotter returns the VM's backend as a Snapshotter, or a clear refusal.
func (e *Engine) snapshotter(vm *VM) (hypervisor.Backend, hypervisor.Snapshotter, error) {
	b, err := e.backendOf(vm)
	if err != nil {
		return nil, nil, err
	}
	s, ok := b.(hypervisor.Snapshotter)
	if !ok {
		return nil, nil, fmt.Errorf("hypervisor %s cannot snapshot VMs", b.Name())
	}
	return b, s, nil
}

// SaveSnapshot captures a running VM: it is paused only while device state, memory and disks
// are captured, then resumed, also when the capture fails.
func (e *Engine) SaveSnapshot(ctx context.Context, ref string, o SaveOptions) (*snapshot.Snapshot, error) {
	ids, err := e.resolveIDs(ctx, []string{ref})
	if err != nil {
		return nil, err
	}
	var snap *snapshot.Snapshot
	err = e.withVMLock(ctx, ids[0], func() error {
		vm, err := e.getVM(ctx, ids[0])
		if err != nil {
			return err
		}
		if vm.State != StateRunning || !e.alive(vm) {
			return fmt.Errorf("VM %s is not running: only running VMs can be snapshotted (cocoon vm start %s)", vm.Name, vm.Name)
		}
		_, sn, err := e.snapshotter(vm)
		if err != nil {
			return err
		}
		snap = &snapshot.Snapshot{ID: rand.Text(), Name: o.Name, Description: o.Description, SourceVM: vm.ID,
			CreatedAt: time.Now().UTC()}
		if snap.Name == "" {
			snap.Name = vm.Name + "-" + time.Now().UTC().Format("20060102-150405")
		}
		snap.Manifest.Name, snap.Manifest.Description = snap.Name, snap.Description
		if err := e.snaps.Reserve(ctx, snap); err != nil {
			return err
		}
		staging, release, err := e.snaps.StagingDir("save")
		if err == nil {
			defer release()
			err = e.capture(ctx, vm, sn, staging, &snap.Manifest)
		}
		if err == nil { // after the resume: digests read every payload once
			err = snapshot.WriteManifest(staging, &snap.Manifest)
		}
		if err == nil {
			err = e.snaps.Commit(ctx, snap, staging)
		}
		if err != nil {
			os.RemoveAll(staging)                                                       //nolint:errcheck
			if derr := e.snaps.Drop(context.WithoutCancel(ctx), snap.ID); derr != nil { // rollback
				err = errors.Join(err, derr)
			}
			return fmt.Errorf("snapshot VM %s: %w", vm.Name, err)
		}
		return nil
	})
	return snap, err
}

// capture pauses the VM, saves state, memory and writable disks into dir, and resumes it;
// m describes them, short of the file list (snapshot.WriteManifest).
func (e *Engine) capture(ctx context.Context, vm *VM, sn hypervisor.Snapshotter, dir string, m *snapshot.Manifest) (err error) {
	name, desc := m.Name, m.Description
	*m = manifestOf(vm)
	m.Name, m.Description = name, desc
	// Recorded durably before the pause: if this process dies before the resume, the next
	// command on the VM resumes the guest (resumeIfInterrupted).
	if err := markPaused(vm, "snapshot save"); err != nil {
		return fmt.Errorf("record the pause: %w", err)
	}
	if err := sn.Pause(ctx, vm.ref()); err != nil {
		clearPaused(vm)
		return fmt.Errorf("pause: %w", err)
	}
	defer func() {
		if rerr := sn.Resume(context.WithoutCancel(ctx), vm.ref()); rerr != nil {
			err = errors.Join(err, fmt.Errorf("resume: %w", rerr)) // the marker stays: the next command retries
			return
		}
		clearPaused(vm)
	}()
	crashpoint.At(CrashPaused)
	if err := sn.SaveState(ctx, vm.ref(), dir); err != nil {
		return fmt.Errorf("save device state: %w", err)
	}
	for _, d := range e.attachedDisks(vm) {
		sd := snapshot.Disk{Role: d.Role, Serial: d.Serial, Format: string(d.Format), ReadOnly: d.ReadOnly, DirectIO: d.DirectIO,
			FSType: d.FSType, MountPoint: d.MountPoint}
		switch d.Role {
		case "layer":
			sd.Layer = layerID(d.Path)
		default:
			sd.File = filepath.Base(d.Path)
			if _, err := disk.CloneFile(filepath.Join(dir, sd.File), d.Path); err != nil {
				return fmt.Errorf("capture disk %s: %w", sd.File, err)
			}
		}
		m.Disks = append(m.Disks, sd)
	}
	if vm.Boot != nil && vm.Boot.FirmwareVars != "" {
		if _, err := disk.CloneFile(filepath.Join(dir, snapshot.FileFirmware), vm.Boot.FirmwareVars); err != nil {
			return fmt.Errorf("capture UEFI variables: %w", err)
		}
	}
	return nil
}

// attachedDisks are the disks the running process has, in order (cidata only on first boot).
func (e *Engine) attachedDisks(vm *VM) []hypervisor.Disk {
	var out []hypervisor.Disk
	for _, d := range vm.Disks {
		if d.Role == "cidata" && !vm.CidataAttached {
			continue
		}
		out = append(out, d)
	}
	return out
}

func manifestOf(vm *VM) snapshot.Manifest {
	m := snapshot.Manifest{Hypervisor: vm.Hypervisor, CPU: vm.Config.CPU, MaxCPU: vm.maxCPU(), Memory: vm.Config.Memory,
		Storage: vm.Config.Storage, NICs: len(vm.Networks), QueueSize: vm.Config.QueueSize, DiskQueueSize: vm.Config.DiskQueueSize,
		Network: vm.Config.Network, Image: vm.Config.Image, ImageDigest: vm.Config.ImageDigest, ImageKind: vm.Config.ImageKind, Platform: vm.Config.Platform,
		NoDirectIO: vm.Config.NoDirectIO, Windows: vm.Config.Windows, Accel: vm.Config.Accel}
	for _, n := range vm.Networks {
		m.MACs = append(m.MACs, n.MAC)
	}
	for id := range vm.ImageBlobIDs {
		m.ImageBlobIDs = append(m.ImageBlobIDs, id)
	}
	slices.Sort(m.ImageBlobIDs)
	if vm.Boot != nil {
		m.Cmdline = vm.Boot.Cmdline
	}
	return m
}

// layerID is the blob ID (file stem) of a layer blob path.
func layerID(path string) string {
	base := filepath.Base(path)
	return base[:len(base)-len(filepath.Ext(base))]
}

// ListSnapshots lists committed snapshots, optionally only those of one VM.
func (e *Engine) ListSnapshots(ctx context.Context, vmRef string) ([]snapshot.Snapshot, error) {
	all, err := e.snaps.List(ctx)
	if err != nil || vmRef == "" {
		return all, err
	}
	ids, err := e.resolveIDs(ctx, []string{vmRef})
	if err != nil {
		return nil, err
	}
	var out []snapshot.Snapshot
	for _, s := range all {
		if s.SourceVM == ids[0] {
			out = append(out, s)
		}
	}
	return out, nil
}

// InspectSnapshot resolves one snapshot.
func (e *Engine) InspectSnapshot(ctx context.Context, ref string) (*snapshot.Snapshot, error) {
	return e.snaps.Resolve(ctx, ref)
}

// RemoveSnapshots deletes snapshots; all refs are resolved before anything is deleted. VMs
// cloned or restored from a snapshot keep running: their memory mapping holds the data.
func (e *Engine) RemoveSnapshots(ctx context.Context, refs []string) ([]string, error) {
	var ids []string
	for _, r := range refs {
		s, err := e.snaps.ResolveAny(ctx, r)
		if err != nil {
			return nil, err
		}
		ids = append(ids, s.ID)
	}
	var done []string
	for _, id := range ids {
		// The standbys go first (their pool's lock keeps a refill out); a crash between leaves
		// standbys of a gone snapshot, which gc collects.
		err := e.withStandbyLock(ctx, id, func() error {
			_, stale, err := e.standbys(ctx, id, nil)
			if err == nil {
				err = e.removeStandbys(ctx, id, stale)
			}
			return err
		})
		if err == nil {
			err = e.snaps.Drop(ctx, id)
		}
		if err != nil {
			return done, err
		}
		done = append(done, id)
	}
	return done, nil
}

// ExportSnapshot streams a snapshot as a .tar.gz, or a plain .tar when !gzip (GNU tar
// compatible, sparse-aware), to w.
func (e *Engine) ExportSnapshot(ctx context.Context, ref string, w io.Writer, gzip bool) (*snapshot.Snapshot, error) {
	s, err := e.snaps.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	files := []string{snapshot.ManifestName}
	for _, f := range s.Manifest.Files {
		files = append(files, f.Name)
	}
	return s, archive.Export(ctx, e.snaps.Dir(s.ID), files, w, archive.ExportOptions{Workers: e.cfg.PoolSize, Plain: !gzip})
}

// maxImportBytes bounds the apparent size an archive may declare (sparse disks count fully).
const maxImportBytes = 4 << 40

// ImportSnapshot reads an export archive from r into a staging dir, validates it against its
// manifest (names, digests, qcow2 references, device state header) and commits it under a
// new ID. On any error nothing remains.
func (e *Engine) ImportSnapshot(ctx context.Context, r io.Reader, o SaveOptions) (*snapshot.Snapshot, error) {
	staging, release, err := e.snaps.StagingDir("import")
	if err != nil {
		return nil, err
	}
	defer release()
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(staging) //nolint:errcheck
		}
	}()
	entries, err := archive.Import(ctx, r, staging, archive.Limits{MaxFiles: 24, MaxTotalBytes: maxImportBytes, Allowed: snapshot.Allowed})
	if err != nil {
		return nil, fmt.Errorf("import snapshot: %w", err)
	}
	m, err := snapshot.ReadManifest(staging)
	if err == nil {
		err = m.Verify(entries)
	}
	if err == nil {
		err = e.checkImported(staging, m)
	}
	if err != nil {
		return nil, fmt.Errorf("import snapshot: %w", err)
	}
	// The archive's name and description stand unless the caller overrides them.
	snap := &snapshot.Snapshot{ID: rand.Text(), Name: cmp.Or(o.Name, m.Name), Description: cmp.Or(o.Description, m.Description),
		CreatedAt: time.Now().UTC(), Manifest: *m}
	if snap.Name == "" {
		snap.Name = "imported-" + snap.ID[:8]
	}
	if err := checkDescription(snap.Description); err != nil && o.Description == "" {
		return nil, fmt.Errorf("import snapshot: the archive's %w: pass --description", err)
	} else if err != nil {
		return nil, fmt.Errorf("import snapshot: --description: %w", err)
	}
	if snap.Name != m.Name || snap.Description != m.Description {
		// A later export carries the names this snapshot has here.
		snap.Manifest.Name, snap.Manifest.Description = snap.Name, snap.Description
		if err := snapshot.WriteManifest(staging, &snap.Manifest); err != nil {
			return nil, fmt.Errorf("import snapshot: %w", err)
		}
	}
	if err := e.snaps.Reserve(ctx, snap); err != nil {
		return nil, err
	}
	if err := e.snaps.Commit(ctx, snap, staging); err != nil {
		return nil, errors.Join(err, e.snaps.Drop(context.WithoutCancel(ctx), snap.ID))
	}
	committed = true
	return snap, nil
}

// maxDescription bounds a snapshot description from an untrusted archive.
const maxDescription = 4096

// checkDescription refuses control characters (a description is printed to terminals) and
// oversized text.
func checkDescription(d string) error {
	if len(d) > maxDescription {
		return fmt.Errorf("description is %d bytes, over the %d-byte limit", len(d), maxDescription)
	}
	if strings.ContainsFunc(d, unicode.IsControl) {
		return fmt.Errorf("description contains control characters")
	}
	return nil
}
