package cloudhv

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// agentProbeTimeout bounds AgentConnected's CONNECT round trip.
const agentProbeTimeout = 2 * time.Second

// AgentConnected implements hypervisor.AgentChannel: CH's hybrid vsock answers "OK <port>"
// to CONNECT only while something in the guest listens on the agent's port.
func (b *Backend) AgentConnected(ctx context.Context, vm hypervisor.VMRef) (bool, error) {
	if !fileExists(vsockPath(vm.RunDir)) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, agentProbeTimeout)
	defer cancel()
	conn, err := client.HybridVsock(vsockPath(vm.RunDir), proto.VsockPort)(ctx)
	if err != nil {
		return false, nil //nolint:nilerr // a refused CONNECT is the answer "not connected"
	}
	conn.Close()
	return true, nil
}

// DialAgent implements hypervisor.AgentChannel: every session is its own vsock stream.
func (b *Backend) DialAgent(ctx context.Context, vm hypervisor.VMRef) (io.ReadWriteCloser, error) {
	conn, err := client.HybridVsock(vsockPath(vm.RunDir), proto.VsockPort)(ctx)
	if err != nil {
		return nil, fmt.Errorf("agent of VM %s: %w", vm.ID, err)
	}
	return conn, nil
}
