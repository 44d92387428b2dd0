package firecracker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/console/relay"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// plan is the part of a launch plan that later commands (stop, alive) need too: the process's
// identity and the files only a running Firecracker needs. logDir is "" outside a launch.
func (b *Backend) plan(runDir, logDir string) hypervisor.Plan {
	p := hypervisor.Plan{Backend: Name, RunDir: runDir, Binary: b.binary, PIDFile: pidPath(runDir),
		Control: apiPath(runDir), Cmdline: cmdlinePath(runDir), Wait: b.socketWait, Dir: runDir,
		Runtime: []string{apiPath(runDir), consolePath(runDir), vsockPath(runDir), pidPath(runDir)},
		Cleanup: func() error { return removeDiskLinks(runDir) }}
	if logDir != "" {
		p.Log = logPath(logDir)
	}
	return p
}

// args is Firecracker's command line: everything else goes through the API.
func (b *Backend) args(spec hypervisor.VMSpec) []string {
	return []string{"--api-sock", apiPath(spec.RunDir), "--log-path", logPath(spec.LogDir), "--level", "Warning", "--id", spec.ID}
}

// Start implements hypervisor.Backend.
func (b *Backend) Start(ctx context.Context, spec hypervisor.VMSpec) (hypervisor.Process, error) {
	if err := b.validate(spec, false); err != nil {
		return hypervisor.Process{}, err
	}
	calls := bootCalls(spec, true)
	p, err := b.launch(ctx, spec, func(ctx context.Context, c *rest.Client) error { return do(ctx, c, calls) })
	if err != nil {
		return p, fmt.Errorf("start %w", err)
	}
	return p, nil
}

// launch starts Firecracker for spec inside its NICs' netns with a fresh PTY as its serial
// console, starts the console relay on the PTY's master, then configures FC over its API.
func (b *Backend) launch(ctx context.Context, spec hypervisor.VMSpec, configure func(context.Context, *rest.Client) error) (hypervisor.Process, error) {
	ns, err := netnsOf(spec)
	if err != nil {
		return hypervisor.Process{}, err
	}
	master, slave, err := pty.Open()
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("firecracker for VM %s: open console PTY: %w", spec.ID, err)
	}
	// FC and the relay hold their own copies; ours must go, or the relay never sees FC exit.
	defer master.Close()
	defer slave.Close()

	p := b.plan(spec.RunDir, spec.LogDir)
	p.VMID, p.Args, p.Stdio, p.Netns = spec.ID, b.args(spec), slave, ns
	p.Prepare = func() error {
		// FC opens its log without O_APPEND and needs it to exist: it holds the last run only.
		if err := os.WriteFile(logPath(spec.LogDir), nil, 0o640); err != nil {
			return fmt.Errorf("create firecracker log: %w", err)
		}
		return linkDisks(spec)
	}
	ready := func(ctx context.Context) error {
		// A connect, not a request: polls would otherwise show up in the API's request log.
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", apiPath(spec.RunDir))
		if err != nil {
			return err
		}
		return c.Close()
	}
	setup := func(ctx context.Context) error {
		// The relay first, so the console log holds the guest's first line.
		relayPID, err := relay.Start(relay.Options{Endpoint: relay.Endpoint{FD: master}, Socket: consolePath(spec.RunDir),
			Log: consoleLogPath(spec.LogDir)})
		if err != nil {
			return err
		}
		if err := configure(ctx, api(spec.RunDir)); err != nil {
			// The relay would leave by itself once FC is killed; a failed start leaves
			// nothing running when it returns.
			return errors.Join(err, killRelay(relayPID))
		}
		return nil
	}
	return hypervisor.Run(ctx, p, ready, setup)
}

// do makes calls in order, stopping at the first failure.
func do(ctx context.Context, c *rest.Client, calls []rest.Call) error {
	for _, call := range calls {
		if err := c.Do(ctx, call); err != nil {
			return err
		}
	}
	return nil
}

// netnsOf is the one network namespace spec's TAPs live in ("" when it has no NICs).
func netnsOf(spec hypervisor.VMSpec) (string, error) {
	var ns string
	for i, n := range spec.NICs {
		switch {
		case i == 0:
			ns = n.Netns
		case n.Netns != ns:
			return "", errors.New("firecracker opens every TAP in its own network namespace: all NICs of a VM must share one")
		}
	}
	return ns, nil
}

// killRelay ends the console relay of a launch that failed and waits until it is gone. The
// pidfd pins the process: the signal cannot reach a successor of a reused PID.
func killRelay(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop console relay %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("stop console relay %d: %w", pid, err)
	}
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if n > 0 || err != nil && !errors.Is(err, unix.EINTR) {
			return nil
		}
	}
}
