package firecracker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Drive and vsock paths in snapshots.
//
// A Firecracker snapshot (vmstate) records each drive's path_on_host as it was given, and
// PUT /snapshot/load opens those paths again (read-write for writable drives) before anything
// else can be said. Had the source VM been given absolute paths, a clone would open the
// source's COW and data disks. The original cocoon swapped the source's files for symlinks to
// the clone's under a flock and put them back after the load (spec §10.6 step 4); a crash in
// between left the source's disk renamed. We do neither: FC is given RELATIVE drive paths,
// "disks/drive_<i>", and runs with the VM's run dir as its working directory, where
// disks/drive_<i> is a symlink to that VM's own disk. The vmstate therefore names no host disk
// at all; a clone's FC resolves the same names in the clone's run dir and opens the clone's
// disks. No file of the source VM is ever renamed, linked or opened.
//
// The vsock's socket is named the same way ("vsock.sock", relative), so a clone's FC binds its
// own run dir's socket. This is instead of vsock_override on load: that field is a recent
// addition to the load API and FC refuses unknown load fields, so relying on it would tie
// clones to the newest releases rather than the ≥ 1.14 this backend accepts.
//
// Why not PATCH /drives/<id> after the load (the API allows it once the VM exists)? The load
// itself has already opened whatever the vmstate names by then, and for our own snapshots
// the names are right. What an untrusted (imported) vmstate names is checked instead, before
// the guest runs, against FC's own GET /vm/config (verifyDevices).

// driveLink is drive i's path as FC knows it, relative to its working directory (the run dir).
func driveLink(i int) string { return filepath.Join("disks", driveID(i)) }

// linkDisks makes the run dir's disks/drive_<i> links to spec's disks, in order.
func linkDisks(spec hypervisor.VMSpec) error {
	dir := diskLinkDir(spec.RunDir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove stale drive links: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("make drive link dir: %w", err)
	}
	for i, d := range spec.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("disk %d (%s): %w", i, d.Role, err)
		}
		if err := os.Symlink(d.Path, filepath.Join(spec.RunDir, driveLink(i))); err != nil {
			return fmt.Errorf("link drive %d: %w", i, err)
		}
	}
	return nil
}

// removeDiskLinks deletes the links (never their targets).
func removeDiskLinks(runDir string) error {
	if err := os.RemoveAll(diskLinkDir(runDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove drive links: %w", err)
	}
	return nil
}
