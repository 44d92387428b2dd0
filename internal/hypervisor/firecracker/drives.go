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
// disks. No file outside the clone's run dir is ever renamed, linked or opened for writing.
//
// The vsock's socket is named the same way ("vsock.sock", relative), so a clone's FC binds its
// own run dir's socket. This is instead of vsock_override on load, which the FC releases this
// backend supports (≥ 1.14) do not all accept: the reference API has it, 1.15 still refuses
// unknown load fields.
//
// After the load, and before the guest runs, every drive is also re-pointed with PATCH
// /drives/drive_<i> (the API allows it once the VM exists, "post-boot", which a loaded
// snapshot is). For our own snapshots that names the same link again; for an imported
// vmstate, whose contents we cannot fully parse, it guarantees that the guest's I/O goes to
// the clone's disks whatever paths the file names.

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
