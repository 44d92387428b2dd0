package engine

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// A snapshot archive is untrusted: the manifest is validated when read (snapshot.ReadManifest)
// and its digests verified, and here the payloads whose content a hypervisor interprets are
// checked: qcow2 headers (which can name host files) and the device state header.

// checkImported checks the payloads of a snapshot imported into dir, before it is committed.
func (e *Engine) checkImported(dir string, m *snapshot.Manifest) error {
	for _, d := range m.Disks {
		if d.Role == snapshot.RoleLayer || snapshot.DiskFormat(d) != "qcow2" {
			continue
		}
		backing, dataFile, err := disk.Qcow2Refs(filepath.Join(dir, d.File))
		if err != nil {
			return err
		}
		if err := checkQcow2Refs(d.File, backing, dataFile, func(b string) bool { return isBlobPath(b, m.ImageBlobIDs) }); err != nil {
			return err
		}
	}
	b, ok := e.backends[m.Hypervisor]
	if !ok {
		return fmt.Errorf("the snapshot needs hypervisor %s, which this build does not support", m.Hypervisor)
	}
	sn, ok := b.(hypervisor.Snapshotter)
	if !ok {
		return fmt.Errorf("hypervisor %s cannot resume snapshots", b.Name())
	}
	if err := sn.CheckState(snapshotSource(dir, m)); err != nil {
		return fmt.Errorf("device state: %w", err)
	}
	return nil
}

// checkOverlay is the last check of a cloud overlay before launch: after clone rebased it,
// it refers to the local base blob and nothing else.
func checkOverlay(path, blob string) error {
	backing, dataFile, err := disk.Qcow2Refs(path)
	if err != nil {
		return err
	}
	return checkQcow2Refs(filepath.Base(path), backing, dataFile, func(b string) bool { return b == blob })
}

func checkQcow2Refs(name, backing, dataFile string, backingOK func(string) bool) error {
	switch {
	case dataFile != "":
		return fmt.Errorf("%s has an external data file %q: a snapshot disk must not refer to host files", name, dataFile)
	case backing != "" && !backingOK(backing):
		return fmt.Errorf("%s has backing file %q, not the snapshot's base image: a snapshot disk must not refer to other host files", name, backing)
	}
	return nil
}

// isBlobPath reports whether p names, as an absolute path, a cloud image blob
// (<dir>/<blob id>.qcow2) of the snapshot: what an overlay exported from another host
// refers to. Clone replaces it with this host's blob before anything opens the overlay.
func isBlobPath(p string, blobIDs []string) bool {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return false
	}
	id, ok := strings.CutSuffix(filepath.Base(p), ".qcow2")
	return ok && slices.Contains(blobIDs, id)
}

// snapshotSource describes the snapshot in dir for the backend.
func snapshotSource(dir string, m *snapshot.Manifest) hypervisor.SnapshotSource {
	return hypervisor.SnapshotSource{Dir: dir, CPUs: m.CPU, MaxCPUs: m.MaxCPU, MemoryBytes: m.Memory, MACs: m.MACs}
}
