package engine

import (
	"fmt"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/cloudinit"
	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// planDataDisks appends the VM's data disks (sparse raw files in its run dir) to its disk list;
// their serial is their name, so the guest finds them as /dev/disk/by-id/virtio-<name>.
func planDataDisks(vm *VM, disks []disk.DataDisk, direct bool) {
	for _, d := range disks {
		dio := direct
		if d.DirectIO != nil {
			dio = *d.DirectIO
		}
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: filepath.Join(vm.RunDir, disk.DataDiskFile(d.Name)), Format: hypervisor.FormatRaw,
			Serial: d.Name, DirectIO: dio, Role: "data", FSType: d.FSType, MountPoint: d.MountPoint})
	}
}

// makeDataDisks creates the data disk files planDataDisks planned (ext4 unless fstype=none).
// Undo is the run dir's removal.
func makeDataDisks(vm *VM, disks []disk.DataDisk) error {
	for _, d := range disks {
		path := filepath.Join(vm.RunDir, disk.DataDiskFile(d.Name))
		var err error
		if d.FSType == "ext4" {
			label := d.Name
			if len(label) > 16 { // ext4 labels hold 16 bytes; the serial still names the disk
				label = ""
			}
			err = disk.CreateRawExt4(path, d.Size, label)
		} else {
			err = disk.CreateRaw(path, d.Size)
		}
		if err != nil {
			return fmt.Errorf("create data disk %s: %w", d.Name, err)
		}
	}
	return nil
}

// seedMounts are the cloud-init mounts: rows of the VM's data disks.
func seedMounts(vm *VM) []cloudinit.Mount {
	var out []cloudinit.Mount
	for _, d := range vm.Disks {
		if d.Role == "data" && d.MountPoint != "" && d.FSType != "none" {
			out = append(out, cloudinit.Mount{Serial: d.Serial, MountPoint: d.MountPoint, FSType: d.FSType})
		}
	}
	return out
}
