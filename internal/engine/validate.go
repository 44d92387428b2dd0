package engine

import (
	"cmp"
	"fmt"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// checkPlan validates a VM's whole configuration against its backend's capabilities and
// limits before anything is stored, reserved or created. plan fills a copy of the record with
// the disks and boot configuration it will get; NICs are the requested ones, whose MACs and
// TAPs only exist later.
func (e *Engine) checkPlan(b hypervisor.Backend, vm *VM, plan func(*VM) error) error {
	c := *vm
	if err := plan(&c); err != nil {
		return err
	}
	spec := specOf(&c, true)
	spec.ID = cmp.Or(c.Name, c.Config.Image) // the ID is new to the user: name the VM as they know it
	for i := range c.Config.NICs {
		n := hypervisor.NIC{Queues: nicQueues(b.Capabilities(), c.Config.CPU), QueueSize: c.Config.QueueSize}
		if i < len(c.Networks) {
			n.MAC, n.QueueSize, n.MTU = c.Networks[i].MAC, c.Networks[i].QueueSize, c.Networks[i].MTU
		}
		spec.NICs = append(spec.NICs, n)
	}
	if err := spec.Validate(b.Capabilities(), b.Name()); err != nil {
		return fmt.Errorf("invalid VM configuration: %w", err)
	}
	return nil
}
