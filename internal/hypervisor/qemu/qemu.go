// Package qemu is the QEMU backend: a q35 machine driven over QMP, with KVM where it really
// works and TCG otherwise. Guest RAM is a shared file mapping (tmpfs or hugetlbfs) so snapshots
// and clones can reuse it; NICs sit on PCIe root ports so they can be hot-swapped.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Name is the backend's name in VM records and on the command line.
const Name = "qemu"

// Options configure the backend. Zero values mean the defaults.
type Options struct {
	Binary     string        // default "qemu-system-x86_64" (looked up on PATH)
	SocketWait time.Duration // how long Start waits for QMP to answer (default 10s)
	// RestoreWait bounds StartFromSnapshot: launch, state load, NIC swaps (default 2m).
	RestoreWait time.Duration
	// TCGCacheMB is the TCG translation cache per VM. QEMU's default (1 GiB) grows into
	// resident memory on long-running guests; 256 MiB holds a Linux guest's hot code.
	TCGCacheMB int
}

// Backend drives qemu-system-x86_64.
type Backend struct {
	binary      string
	socketWait  time.Duration
	restoreWait time.Duration
	tcgCacheMB  int
	aioOnce     sync.Once
	aio         string // see aioMode
}

// New returns a QEMU backend.
func New(o Options) *Backend {
	b := &Backend{binary: o.Binary, socketWait: o.SocketWait, restoreWait: o.RestoreWait, tcgCacheMB: o.TCGCacheMB}
	if b.binary == "" {
		b.binary = "qemu-system-x86_64"
	}
	if b.socketWait <= 0 {
		b.socketWait = 10 * time.Second
	}
	if b.restoreWait <= 0 {
		b.restoreWait = 2 * time.Minute
	}
	if b.tcgCacheMB <= 0 {
		b.tcgCacheMB = 256
	}
	return b
}

var (
	_ hypervisor.Backend       = (*Backend)(nil)
	_ hypervisor.Snapshotter   = (*Backend)(nil)
	_ hypervisor.AgentChannel  = (*Backend)(nil)
	_ hypervisor.ConsoleLogger = (*Backend)(nil)
)

// Name implements hypervisor.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements hypervisor.Backend.
func (b *Backend) Capabilities() hypervisor.Capabilities {
	// Memory grows by pc-dimm hot-add into slots reserved at cold boot (memory.go); NICs are
	// swapped and added on the spare root ports.
	return hypervisor.Capabilities{UEFI: true, Qcow2: true, Windows: true, MultiQueue: true, Balloon: true,
		ResizeOnClone: true, MemoryGrowOnClone: true, NICHotSwap: true, Limits: limits}
}

// Available implements hypervisor.Backend.
func (b *Backend) Available() error {
	if _, err := exec.LookPath(b.binary); err != nil {
		return fmt.Errorf("%s not found: install the qemu-system-x86 package", b.binary)
	}
	return nil
}

// Runtime files of one VM.
func qmpPath(runDir string) string     { return filepath.Join(runDir, "qmp.sock") }
func consolePath(runDir string) string { return filepath.Join(runDir, "console.sock") }
func serialPath(runDir string) string  { return filepath.Join(runDir, "serial.sock") }
func pidPath(runDir string) string     { return filepath.Join(runDir, "qemu.pid") }
func cmdlinePath(runDir string) string { return filepath.Join(runDir, "cmdline") }

// ramLink points at the guest RAM file, which lives outside the run dir (on tmpfs or
// hugetlbfs); Stop follows it to free that memory.
func ramLink(runDir string) string        { return filepath.Join(runDir, "guest.ram") }
func ramPath(s hypervisor.VMSpec) string  { return filepath.Join(s.MemoryDir, s.ID+".ram") }
func logPath(logDir string) string        { return filepath.Join(logDir, "qemu.log") }
func consoleLogPath(logDir string) string { return filepath.Join(logDir, "console.log") }

func (b *Backend) owner(runDir string) hypervisor.Owner {
	// The recorded layout says which QEMU binary runs the VM; none yet means no process either.
	l, _ := readLayout(runDir)
	return hypervisor.Owner{Binary: b.binaryFor(l.Arch), Marker: qmpPath(runDir), PIDFile: pidPath(runDir)}
}

// ConsoleSocket implements hypervisor.Backend: the serial port's unix socket.
func (b *Backend) ConsoleSocket(vm hypervisor.VMRef) string { return consolePath(vm.RunDir) }

// ConsoleLog implements hypervisor.ConsoleLogger: QEMU logs the serial port in full.
func (b *Backend) ConsoleLog(logDir string) string { return consoleLogPath(logDir) }

// Alive implements hypervisor.Backend.
func (b *Backend) Alive(vm hypervisor.VMRef) bool {
	h, err := hypervisor.Open(vm, b.owner(vm.RunDir))
	if err != nil {
		return false
	}
	h.Close()
	return true
}

// Start implements hypervisor.Backend.
func (b *Backend) Start(ctx context.Context, spec hypervisor.VMSpec) (hypervisor.Process, error) {
	accel, err := resolveAccel(spec.Accel, spec.Arch)
	if err == nil {
		err = b.validate(spec, false)
	}
	if err != nil {
		return hypervisor.Process{}, err
	}
	l := coldLayout(spec, accel)
	ab := argBuilder{spec: spec, layout: l, accel: accel, tcgCacheMB: b.tcgCacheMB, aio: b.aioMode()}
	args, files := ab.build()
	ctx, cancel := context.WithTimeout(ctx, b.socketWait)
	defer cancel()
	p, err := b.launch(ctx, spec, l, args, files, func(c *qmpClient) error { return afterBoot(c, spec) })
	if err != nil {
		return p, fmt.Errorf("start %w", err)
	}
	return p, nil
}

// launch starts QEMU with args for spec, whose guest-visible machine is l, waits for QMP and
// runs setup on that session. On any error the process is killed and its runtime files are
// removed; the error names QEMU's log.
func (b *Backend) launch(ctx context.Context, spec hypervisor.VMSpec, l layout, args []string, files []*os.File,
	setup func(*qmpClient) error) (hypervisor.Process, error) {
	// Clearing the runtime files below would pull the sockets and RAM file out from under a
	// running QEMU.
	if h, err := hypervisor.Open(hypervisor.VMRef{ID: spec.ID, RunDir: spec.RunDir}, b.owner(spec.RunDir)); err == nil {
		h.Close()
		return hypervisor.Process{}, fmt.Errorf("qemu for VM %s: already running (pid %d): stop it first", spec.ID, h.PID)
	}
	// A launch must not find a previous run's sockets or RAM contents.
	if err := removeRuntime(spec.RunDir); err != nil {
		return hypervisor.Process{}, err
	}
	if err := os.Remove(ramPath(spec)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return hypervisor.Process{}, fmt.Errorf("remove stale guest RAM file: %w", err)
	}

	if err := os.WriteFile(cmdlinePath(spec.RunDir), []byte(shellJoin(b.binaryFor(spec.Arch), args, false)+"\n"), 0o600); err != nil {
		return hypervisor.Process{}, fmt.Errorf("write cmdline of VM %s: %w", spec.ID, err)
	}
	err := writeLayout(spec.RunDir, l)
	if err == nil {
		err = prepareAgentDir(spec.RunDir, l)
	}
	// The link marks the RAM file as this VM's own, to delete when it stops; a clone's RAM is
	// its snapshot's file, which other clones share.
	if err == nil && l.RAM.Shared {
		if err = createRAMFile(l.RAM.File); err == nil {
			err = os.Symlink(l.RAM.File, ramLink(spec.RunDir))
		}
	}
	if err != nil {
		_ = removeRuntime(spec.RunDir)
		return hypervisor.Process{}, fmt.Errorf("prepare run dir of VM %s: %w", spec.ID, err)
	}

	log := logPath(spec.LogDir)
	logStart := fileSize(log)
	// The relay first: QEMU holds the guest until the relay connects to its serial port, so a
	// CLI killed between the two steps must not leave a QEMU waiting for nobody; a relay
	// without its QEMU gives up by itself.
	relayPID, err := startConsoleRelay(spec)
	var child *hypervisor.Child
	if err == nil {
		child, err = hypervisor.Launch(hypervisor.LaunchOptions{Binary: b.binaryFor(spec.Arch), Args: args,
			ExtraFiles: files, LogPath: log, PIDPath: pidPath(spec.RunDir)})
	}
	if err == nil {
		var c *qmpClient
		if c, err = b.awaitQMP(ctx, spec.RunDir, child, log, logStart); err == nil {
			err = setup(c)
			c.Close()
		}
		if err != nil {
			// When QEMU gave up by itself (a state it cannot load), its reason beats ours,
			// which is only the lost QMP connection.
			select {
			case <-child.Exited():
				err = fmt.Errorf("qemu exited: %s", lastLine(log, logStart))
			case <-time.After(time.Second):
				child.Kill()
			}
		}
	}
	if err != nil {
		stopConsoleRelay(relayPID)
		if cerr := removeRuntime(spec.RunDir); cerr != nil {
			slog.Warn("clean up after failed start", "vm", spec.ID, "err", cerr)
		}
		return hypervisor.Process{}, fmt.Errorf("qemu for VM %s: %w (log: %s)", spec.ID, err, log)
	}
	slog.Debug("qemu started", "vm", spec.ID, "pid", child.PID, "accel", l.Accel, "aio", b.aioMode())
	p := child.Process
	p.Accel, p.DiskAIO = l.Accel, b.aioMode()
	return p, nil
}

// awaitQMP waits until QMP answers (within the socket wait) and returns the session, which
// then obeys ctx.
func (b *Backend) awaitQMP(ctx context.Context, runDir string, child *hypervisor.Child, log string, logStart int64) (*qmpClient, error) {
	deadline := time.Now().Add(b.socketWait)
	for {
		select {
		case <-child.Exited():
			return nil, fmt.Errorf("qemu exited during startup: %s", lastLine(log, logStart))
		default:
		}
		c, err := dialQMP(ctx, qmpPath(runDir))
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("QMP did not answer within %v: %w", b.socketWait, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for QMP: %w", ctx.Err())
		case <-child.Exited():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// afterBoot sets the balloon target: the guest starts with 75 % of its RAM usable and can
// reclaim the rest when it runs short (deflate-on-oom).
func afterBoot(c *qmpClient, spec hypervisor.VMSpec) error {
	if !spec.Balloon {
		return nil
	}
	target := (spec.MemoryBytes * 3 / 4) &^ (1<<20 - 1)
	return c.execute("balloon", map[string]int64{"value": target}, nil)
}

// Stop implements hypervisor.Backend. The graceful request is an ACPI power-button press.
func (b *Backend) Stop(ctx context.Context, vm hypervisor.VMRef, opts hypervisor.StopOptions) error {
	h, err := hypervisor.Open(vm, b.owner(vm.RunDir))
	if errors.Is(err, hypervisor.ErrNotRunning) {
		slog.Debug("qemu not running, nothing to signal", "vm", vm.ID, "reason", err)
		return removeRuntime(vm.RunDir)
	}
	if err != nil {
		return fmt.Errorf("stop VM %s: %w", vm.ID, err)
	}
	defer h.Close()
	powerdown := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c, err := dialQMP(ctx, qmpPath(vm.RunDir))
		if err != nil {
			return err
		}
		defer c.Close()
		// A paused guest (e.g. a snapshot that never resumed) cannot see the power button.
		var st struct {
			Running bool `json:"running"`
		}
		if err := c.execute("query-status", nil, &st); err != nil {
			return err
		}
		if !st.Running {
			if err := c.execute("cont", nil, nil); err != nil {
				return err
			}
		}
		return c.execute("system_powerdown", nil, nil)
	}
	if err := hypervisor.Escalate(ctx, h, powerdown, opts); err != nil {
		return fmt.Errorf("stop VM %s: %w", vm.ID, err)
	}
	return removeRuntime(vm.RunDir)
}

// removeRuntime deletes what only a running QEMU needs: sockets, PID file, device layout and
// the guest RAM file it owns. cmdline stays as the record of the last launch.
func removeRuntime(runDir string) error {
	var errs []error
	if target, err := os.Readlink(ramLink(runDir)); err == nil {
		errs = append(errs, removeIfExists(target))
	}
	for _, p := range []string{ramLink(runDir), qmpPath(runDir), consolePath(runDir), serialPath(runDir), pidPath(runDir), layoutPath(runDir)} {
		errs = append(errs, removeIfExists(p))
	}
	errs = append(errs, removeAgentSockets(runDir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove runtime files in %s: %w", runDir, err)
	}
	return nil
}

// createRAMFile makes the empty guest RAM file that QEMU then opens and sizes, so it is 0600
// whatever QEMU's umask, and never a link someone planted (O_EXCL|O_NOFOLLOW).
func createRAMFile(path string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create guest RAM file %s: %w", path, err)
	}
	err = unix.Fchmod(fd, 0o600)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("create guest RAM file %s: %w", path, err)
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// DebugCommand implements hypervisor.Backend: the same argv Start uses, with TAP devices
// named instead of passed as fds, so it runs from a shell.
func (b *Backend) DebugCommand(spec hypervisor.VMSpec) (string, error) {
	accel, err := resolveAccel(spec.Accel, spec.Arch)
	if err == nil {
		err = b.validate(spec, true)
	}
	if err != nil {
		return "", err
	}
	ab := argBuilder{spec: spec, layout: coldLayout(spec, accel), accel: accel, tcgCacheMB: b.tcgCacheMB, aio: b.aioMode(), tapByName: true, selfConsole: true}
	args, _ := ab.build()
	return shellJoin(b.binaryFor(spec.Arch), args, true), nil
}
