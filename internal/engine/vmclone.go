package engine

import (
	"maps"
	"slices"

	"github.com/cocoonstack/cocoon/internal/network"
)

// Clone implements store.Cloner: a copy of the index sharing nothing with it, so the store
// can hand out its decoded index again without decoding the file again.
// TestVMIndexCloneSharesNothing fails when a new field is not copied deeply.
func (x *vmIndex) Clone() *vmIndex {
	out := &vmIndex{Header: x.Header, VMs: make(map[string]*VM, len(x.VMs)), Names: maps.Clone(x.Names)}
	for id, vm := range x.VMs {
		out.VMs[id] = vm.clone()
	}
	return out
}

// clone is a deep copy of the record.
func (vm *VM) clone() *VM {
	if vm == nil {
		return nil
	}
	c := *vm
	if vm.Networks != nil {
		c.Networks = make([]network.Attachment, len(vm.Networks))
		for i, n := range vm.Networks {
			n.DNS = slices.Clone(n.DNS)
			c.Networks[i] = n
		}
	}
	c.Disks = slices.Clone(vm.Disks)
	if vm.Boot != nil {
		b := *vm.Boot
		c.Boot = &b
	}
	c.ImageBlobIDs = maps.Clone(vm.ImageBlobIDs)
	c.SnapshotIDs = maps.Clone(vm.SnapshotIDs)
	c.StartedAt = clonePtr(vm.StartedAt)
	c.StoppedAt = clonePtr(vm.StoppedAt)
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
