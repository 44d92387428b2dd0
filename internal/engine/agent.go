package engine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/layer"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/cloudinit"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// Guest agent delivery (OCI images: a read-only layer on top of the image's; cloud images:
// cloud-init) and the host side of its channel.

const (
	roleAgent   = "agent"
	agentSerial = "cocoon-agent"
	// agentCheckTimeout bounds asking the hypervisor whether the agent is there.
	agentCheckTimeout = 10 * time.Second
)

// AgentStatus values shown by vm inspect.
const (
	AgentConnected = "connected"
	AgentAbsent    = "absent"
	AgentDisabled  = "disabled"
)

// agentBinary is the guest agent for guests of arch (GOARCH style), built beside this cocoon
// binary by make build: cocoon-agent for the host's architecture, cocoon-agent-<arch> for others.
func agentBinary(arch string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate the cocoon binary: %w", err)
	}
	name := "cocoon-agent"
	if arch != runtime.GOARCH {
		name += "-" + arch
	}
	p := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("guest agent binary %s (linux/%s) not found: build it with 'make build' (it goes beside cocoon), or create the VM with --no-agent", p, arch)
	}
	return p, nil
}

// agentLayerDisk builds the VM's agent layer in its run dir.
// agentDisk is the VM's agent layer disk, as planned (buildAgentLayer makes its file).
func agentDisk(vm *VM) hypervisor.Disk {
	return hypervisor.Disk{Path: filepath.Join(vm.RunDir, snapshot.FileAgent), Format: hypervisor.FormatRaw, ReadOnly: true, Serial: agentSerial, Role: roleAgent}
}

// buildAgentLayer writes the agent layer (an EROFS image holding the agent binary) into the
// VM's run dir.
func buildAgentLayer(ctx context.Context, vm *VM) error {
	bin, err := agentBinary(platform.Arch(platform.Or(vm.Config.Platform)))
	if err != nil {
		return err
	}
	if err := layer.Build(ctx, bin, agentDisk(vm).Path); err != nil {
		return fmt.Errorf("build guest agent layer for %s: %w", vm.Name, err)
	}
	return nil
}

// cloudAgentDir is where cloud guests mount the agent layer.
const cloudAgentDir = "/opt/cocoon-agent"

// addCloudAgent has cloud-init mount the agent disk (attached at every boot) through fstab and
// enable a unit running the agent from it; the binary is never copied into the guest's disk,
// so what runs is always the layer the VM was created with.
func addCloudAgent(sd *cloudinit.Seed) {
	sd.Mounts = append(sd.Mounts, cloudinit.Mount{Serial: agentSerial, MountPoint: cloudAgentDir, FSType: "erofs", ReadOnly: true})
	sd.Units = append(sd.Units, cloudinit.Unit{Name: layer.UnitName, Content: layer.CloudUnit(cloudAgentDir)})
}

// AgentDialer returns a dialer for the guest agent of a running VM, after checking that the
// agent has opened its channel, so callers fail at once instead of waiting on a silent guest.
func (e *Engine) AgentDialer(ctx context.Context, ref string) (client.Dialer, *VM, error) {
	vm, err := e.InspectVM(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	ch, err := e.agentChannel(vm)
	if err != nil {
		return nil, vm, fmt.Errorf("no guest agent in VM %s: %w", vm.Name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, agentCheckTimeout)
	defer cancel()
	ok, err := ch.AgentConnected(cctx, vm.ref())
	if err != nil {
		return nil, vm, fmt.Errorf("no guest agent in VM %s: %w", vm.Name, err)
	}
	if !ok {
		return nil, vm, fmt.Errorf("no guest agent in VM %s: the guest has not opened the agent channel (still booting, or its image does not start cocoon-agent)", vm.Name)
	}
	r := vm.ref()
	return func(ctx context.Context) (io.ReadWriteCloser, error) { return ch.DialAgent(ctx, r) }, vm, nil
}

func (e *Engine) agentChannel(vm *VM) (hypervisor.AgentChannel, error) {
	switch {
	case vm.Config.NoAgent:
		return nil, fmt.Errorf("it was created with --no-agent")
	case vm.State != StateRunning:
		return nil, fmt.Errorf("the VM is %s, not running (start it with 'cocoon vm start %s')", vm.State, vm.Name)
	}
	b, err := e.backendOf(vm)
	if err != nil {
		return nil, err
	}
	ch, ok := b.(hypervisor.AgentChannel)
	if !ok {
		return nil, fmt.Errorf("hypervisor %s has no agent channel", b.Name())
	}
	return ch, nil
}

// AgentStatus says whether a VM's guest agent answers (connected), could but does not
// (absent: not running, still booting, no agent in the image) or was opted out (disabled).
func (e *Engine) AgentStatus(ctx context.Context, vm *VM) string {
	if vm.Config.NoAgent {
		return AgentDisabled
	}
	ch, err := e.agentChannel(vm)
	if err != nil {
		return AgentAbsent
	}
	ctx, cancel := context.WithTimeout(ctx, agentCheckTimeout)
	defer cancel()
	if ok, err := ch.AgentConnected(ctx, vm.ref()); err != nil || !ok {
		return AgentAbsent
	}
	return AgentConnected
}

// ConsoleLogPath is the file holding a VM's console output (it works for any guest).
func (e *Engine) ConsoleLogPath(ctx context.Context, ref string) (string, *VM, error) {
	vm, err := e.InspectVM(ctx, ref)
	if err != nil {
		return "", nil, err
	}
	b, err := e.backendOf(vm)
	if err != nil {
		return "", vm, err
	}
	cl, ok := b.(hypervisor.ConsoleLogger)
	if !ok {
		return "", vm, fmt.Errorf("hypervisor %s keeps no console log for VM %s", b.Name(), vm.Name)
	}
	return cl.ConsoleLog(vm.LogDir), vm, nil
}

// agentPowerOff is the graceful stop request for a VM whose machine has no power button: the
// guest agent runs poweroff (libvirt's agent shutdown mode). nil keeps the backend's own
// request; a VM without an answering agent then escalates to signals.
func (e *Engine) agentPowerOff(b hypervisor.Backend, vm *VM) func(context.Context) error {
	pb, ok := b.(hypervisor.PowerButton)
	if !ok || pb.HasPowerButton(vm.ref()) || vm.Config.NoAgent {
		return nil
	}
	return func(ctx context.Context) error {
		ch, err := e.agentChannel(vm)
		if err != nil {
			return fmt.Errorf("no power button and no guest agent: %w", err)
		}
		ctx, cancel := context.WithTimeout(ctx, agentCheckTimeout)
		defer cancel()
		ref := vm.ref()
		s, err := client.Start(ctx, func(ctx context.Context) (io.ReadWriteCloser, error) { return ch.DialAgent(ctx, ref) },
			proto.Frame{Type: proto.TypeExec, Argv: []string{"poweroff"}})
		if err != nil {
			return fmt.Errorf("ask the guest agent to power off: %w", err)
		}
		s.Close() // started: the guest is shutting down and the session ends with it
		return nil
	}
}
