package engine

import (
	"strings"

	"github.com/cocoonstack/cocoon/internal/network"
)

// networkRequest rebuilds the network request of an existing VM (recovery keeps IPs and MACs).
func (e *Engine) networkRequest(vm *VM, existing []network.Attachment) network.Request {
	return network.Request{VMID: vm.ID, NICs: len(existing), Queues: nicQueues(e.caps(vm), vm.Config.CPU), QueueSize: vm.Config.QueueSize,
		Network: vm.Config.Network, Bridge: vm.Config.Bridge, Existing: existing}
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
