package firecracker

import (
	"context"
	"io"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// DialAgent implements hypervisor.AgentChannel: FC's hybrid vsock (CONNECT <port> on the
// vsock's unix socket).
func (b *Backend) DialAgent(ctx context.Context, vm hypervisor.VMRef) (io.ReadWriteCloser, error) {
	return client.HybridVsock(vsockPath(vm.RunDir), proto.VsockPort)(ctx)
}

// AgentConnected implements hypervisor.AgentChannel: the agent is there when FC forwards a
// CONNECT to its port and the guest accepts it.
func (b *Backend) AgentConnected(ctx context.Context, vm hypervisor.VMRef) (bool, error) {
	c, err := b.DialAgent(ctx, vm)
	if err != nil {
		return false, nil //nolint:nilerr // not listening (yet) is the answer, not a failure
	}
	return true, c.Close()
}
