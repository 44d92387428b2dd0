package engine

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/cocoonstack/cocoon/internal/cloudinit"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// freshCidata gives a cloud-image clone its own cloud-init seed: its ID as instance-id, its
// name as hostname, network config matched on its new MACs, the same data disk mounts. No
// user or password: the guest keeps the credentials it has. The guest reads it when the
// printed hints re-run cloud-init (drop_caches first, as its page cache may hold the
// snapshot's seed). When the snapshot had the cidata disk (taken before any restart) it gets
// new contents, same size; otherwise the seed is a new disk the backend hot-plugs.
func (e *Engine) freshCidata(vm *VM) error {
	if vm.Config.ImageKind != string(image.KindCloud) || vm.Config.Windows {
		return nil
	}
	i := slices.IndexFunc(vm.Disks, func(d hypervisor.Disk) bool { return d.Role == "cidata" })
	if i < 0 {
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: filepath.Join(vm.RunDir, snapshot.FileCidata),
			Format: hypervisor.FormatRaw, ReadOnly: true, Role: "cidata"})
		i, vm.CidataAttached = len(vm.Disks)-1, true
	}
	if err := cloudinit.WriteImage(vm.Disks[i].Path, e.cloneSeed(vm)); err != nil {
		return fmt.Errorf("cloud-init seed of clone %s: %w", vm.Name, err)
	}
	return nil
}

// renameCidata rewrites the seed of a cloud-image standby in place for the name it is taken
// over under: its hypervisor has the seed disk open, and the guest reads it only later.
func (e *Engine) renameCidata(vm *VM) error {
	i := slices.IndexFunc(vm.Disks, func(d hypervisor.Disk) bool { return d.Role == "cidata" })
	if vm.Config.ImageKind != string(image.KindCloud) || vm.Config.Windows || i < 0 {
		return nil
	}
	if err := cloudinit.RewriteImage(vm.Disks[i].Path, e.cloneSeed(vm)); err != nil {
		return fmt.Errorf("cloud-init seed of clone %s: %w", vm.Name, err)
	}
	return nil
}

func (e *Engine) cloneSeed(vm *VM) cloudinit.Seed {
	sd := cloudSeed(vm, "", "", e.cfg.DNS)
	if !vm.Config.NoAgent { // keep the agent's mount and unit, or the new seed would drop them
		addCloudAgent(&sd)
	}
	return sd
}
