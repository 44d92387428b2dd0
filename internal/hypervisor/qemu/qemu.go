// Package qemu is the QEMU backend: a q35 machine driven over QMP, with KVM where it really
// works and TCG otherwise. Guest RAM is a shared file mapping (tmpfs or hugetlbfs) so snapshots
// and clones can reuse it; NICs sit on PCIe root ports so they can be hot-swapped.
package qemu

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/config"
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
	// UEFI firmware code and variables templates, per guest architecture (GOARCH style).
	Firmware map[string]Firmware
	// CacheDir keeps host probes between commands (<root>/cache: root-only, so nobody else
	// can plant an answer); "" probes in every process.
	CacheDir string
}

// Firmware is one UEFI firmware: its code and the template of its variables store.
type Firmware struct{ Code, Vars string }

// Backend drives qemu-system-x86_64.
type Backend struct {
	binary      string
	socketWait  time.Duration
	restoreWait time.Duration
	tcgCacheMB  int
	firmware    map[string]Firmware
	cacheDir    string
	aioOnce     sync.Once
	aio         string // see aioMode
}

// New returns a QEMU backend.
func New(o Options) *Backend {
	b := &Backend{binary: o.Binary, socketWait: o.SocketWait, restoreWait: o.RestoreWait, tcgCacheMB: o.TCGCacheMB, firmware: o.Firmware, cacheDir: o.CacheDir}
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
	_ hypervisor.Backend         = (*Backend)(nil)
	_ hypervisor.Snapshotter     = (*Backend)(nil)
	_ hypervisor.AgentChannel    = (*Backend)(nil)
	_ hypervisor.ConsoleLogger   = (*Backend)(nil)
	_ hypervisor.FirmwareLocator = (*Backend)(nil)
)

// Firmware implements hypervisor.FirmwareLocator: OVMF (amd64) or AAVMF (arm64), as configured.
func (b *Backend) Firmware(arch string) (code, vars string) {
	f := b.firmware[arch]
	return f.Code, f.Vars
}

// Name implements hypervisor.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements hypervisor.Backend.
func (b *Backend) Capabilities() hypervisor.Capabilities {
	// Memory grows by pc-dimm hot-add into slots reserved at cold boot (memory.go); NICs are
	// swapped and added on the spare root ports.
	return hypervisor.Capabilities{UEFI: true, Qcow2: true, Windows: true, MultiQueue: true, Balloon: true,
		ResizeOnClone: true, MemoryGrowOnClone: true, NICHotSwap: true, FirmwareVars: true, CrossArch: true, Limits: limits}
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
func pidPath(runDir string) string     { return filepath.Join(runDir, "qemu.pid") }
func cmdlinePath(runDir string) string { return filepath.Join(runDir, "cmdline") }

// ramLink points at the guest RAM file, which lives outside the run dir (on tmpfs or
// hugetlbfs); Stop follows it to free that memory.
func ramLink(runDir string) string        { return filepath.Join(runDir, "guest.ram") }
func ramPath(s hypervisor.VMSpec) string  { return filepath.Join(s.MemoryDir, s.ID+".ram") }
func logPath(logDir string) string        { return filepath.Join(logDir, "qemu.log") }
func consoleLogPath(logDir string) string { return filepath.Join(logDir, "console.log") }

func (b *Backend) owner(runDir string) hypervisor.Owner { return b.planOf(runDir).Owner() }

// ConsoleSocket implements hypervisor.Backend: the serial port's unix socket.
func (b *Backend) ConsoleSocket(vm hypervisor.VMRef) string { return consolePath(vm.RunDir) }

// ConsoleLog implements hypervisor.ConsoleLogger: QEMU logs the serial port in full.
func (b *Backend) ConsoleLog(logDir string) string { return consoleLogPath(logDir) }

// Alive implements hypervisor.Backend.
func (b *Backend) Alive(vm hypervisor.VMRef) bool { return hypervisor.IsAlive(vm, b.owner(vm.RunDir)) }

// Start implements hypervisor.Backend.
func (b *Backend) Start(ctx context.Context, spec hypervisor.VMSpec) (hypervisor.Process, error) {
	accel, err := resolveAccel(spec.Accel, spec.Arch)
	if err == nil {
		err = b.validate(spec, false)
	}
	if err != nil {
		return hypervisor.Process{}, err
	}
	serial, err := newSerialLine()
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("start VM %s: %w", spec.ID, err)
	}
	l := coldLayout(spec, accel)
	ab := argBuilder{spec: spec, layout: l, accel: accel, tcgCacheMB: b.tcgCacheMB, aio: b.aioMode(), serial: serial.qemu}
	args, files := ab.build()
	ctx, cancel := context.WithTimeout(ctx, b.socketWait)
	defer cancel()
	p, err := b.launch(ctx, spec, l, args, files, serial, func(c *qmpClient) error { return afterBoot(c, spec) })
	if err != nil {
		return p, fmt.Errorf("start %w", err)
	}
	return p, nil
}

// launch starts QEMU with args for spec, whose guest-visible machine is l, waits for QMP and
// runs setup on that session; the shared runtime (hypervisor.Run) does the rest.
func (b *Backend) launch(ctx context.Context, spec hypervisor.VMSpec, l layout, args []string, files []*os.File,
	serial serialLine, setup func(*qmpClient) error) (hypervisor.Process, error) {
	defer serial.Close()
	p := b.plan(spec.RunDir, spec.LogDir, b.binaryFor(spec.Arch))
	p.VMID, p.Args, p.Files = spec.ID, args, files
	// Under TCG the only huge pages QEMU would get are on its translated-code buffer, mostly
	// empty ones (see hypervisor.LaunchOptions.NoHugePages); KVM guests keep them.
	p.NoHugePages = l.Accel == accelTCG
	var relayStarted chan relayStart
	p.Prepare = func() error {
		// A launch must not find a previous run's RAM contents.
		if err := removeIfExists(ramPath(spec)); err != nil {
			return fmt.Errorf("remove stale guest RAM file: %w", err)
		}
		if err := writeLayout(spec.RunDir, l); err != nil {
			return err
		}
		if err := prepareAgentDir(spec.RunDir, l); err != nil {
			return err
		}
		// The link marks the RAM file as this VM's own, to delete when it stops; a clone's
		// RAM is its snapshot's file, which other clones share.
		if l.RAM.Shared {
			if err := createRAMFile(l.RAM.File); err != nil {
				return err
			}
			if err := os.Symlink(l.RAM.File, ramLink(spec.RunDir)); err != nil {
				return err
			}
		}
		// The relay starts while QEMU does (its ~10 ms are off a clone's path); it is
		// awaited before the launch counts as done.
		relayStarted = make(chan relayStart, 1)
		go func() {
			pid, err := startConsoleRelay(spec, serial.relay)
			relayStarted <- relayStart{pid, err}
		}()
		return nil
	}
	var c *qmpClient
	ready := func(ctx context.Context) (err error) {
		c, err = dialQMP(ctx, qmpPath(spec.RunDir))
		return err
	}
	var relayPID int
	proc, err := hypervisor.Run(ctx, p, ready, func(context.Context) error {
		defer c.Close()
		r := <-relayStarted
		relayStarted, relayPID = nil, r.pid
		if r.err != nil {
			return r.err
		}
		return setup(c)
	})
	if err != nil {
		if relayStarted != nil { // QEMU failed before the relay was awaited
			relayPID = (<-relayStarted).pid
		}
		stopConsoleRelay(relayPID)
		return proc, err
	}
	proc.Accel, proc.DiskAIO = l.Accel, b.aioMode()
	return proc, nil
}

// plan is the part of a launch plan that later commands (stop, alive) need too: the process's
// identity and the files that only a running QEMU needs. cmdline stays as the record of the
// last launch.
func (b *Backend) plan(runDir, logDir, binary string) hypervisor.Plan {
	return hypervisor.Plan{Backend: Name, RunDir: runDir, Binary: binary, Log: logPath(logDir),
		PIDFile: pidPath(runDir), Control: qmpPath(runDir), Cmdline: cmdlinePath(runDir), Wait: b.socketWait,
		Runtime: []string{ramLink(runDir), qmpPath(runDir), consolePath(runDir), pidPath(runDir), layoutPath(runDir)},
		Cleanup: func() error {
			var errs []error
			// The guest RAM file lives outside the run dir (tmpfs or hugetlbfs).
			if target, err := os.Readlink(ramLink(runDir)); err == nil {
				errs = append(errs, removeIfExists(target))
			}
			return errors.Join(append(errs, removeAgentSockets(runDir))...)
		}}
}

// afterBoot sets the balloon target: the guest starts with 75 % of its RAM usable and can
// reclaim the rest when it runs short (deflate-on-oom).
func afterBoot(c *qmpClient, spec hypervisor.VMSpec) error {
	if !spec.Balloon {
		return nil
	}
	target := (spec.MemoryBytes - cmp.Or(spec.BalloonBytes, spec.MemoryBytes/4)) &^ (1<<20 - 1)
	return c.execute("balloon", map[string]int64{"value": target}, nil)
}

// Stop implements hypervisor.Backend. The graceful request is an ACPI power-button press.
func (b *Backend) Stop(ctx context.Context, vm hypervisor.VMRef, opts hypervisor.StopOptions) error {
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
	return hypervisor.StopProcess(ctx, vm, b.planOf(vm.RunDir), powerdown, opts)
}

// HasPowerButton implements hypervisor.PowerButton: the arm64 virt machine has ACPI (and so a
// power button) only when booted through UEFI firmware; direct kernel boot gives the guest a
// device tree whose gpio-keys power key Debian's cloud kernel does not build.
func (b *Backend) HasPowerButton(vm hypervisor.VMRef) bool {
	l, err := readLayout(vm.RunDir)
	return err != nil || l.Arch != "arm64" || l.UEFI
}

// planOf is plan for a VM that may be running: the recorded layout says which QEMU binary
// runs it; none yet means no process either.
func (b *Backend) planOf(runDir string) hypervisor.Plan {
	l, _ := readLayout(runDir)
	return b.plan(runDir, "", b.binaryFor(l.Arch))
}

// removeRuntime deletes what only a running QEMU needs.
func (b *Backend) removeRuntime(runDir string) error { return b.planOf(runDir).RemoveRuntime() }

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

func removeIfExists(path string) error { return hypervisor.RemoveIfExists(path) }

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
	return hypervisor.ShellJoin(b.binaryFor(spec.Arch), args, true), nil
}

func init() {
	hypervisor.Register(hypervisor.Registration{Name: Name, Auto: 1, New: func(cfg *config.Config) hypervisor.Backend {
		return New(Options{Binary: cfg.QEMUBinary, CacheDir: filepath.Join(cfg.RootDir, "cache"), SocketWait: time.Duration(cfg.SocketWaitTimeoutSeconds) * time.Second,
			Firmware: map[string]Firmware{
				"amd64": {Code: cfg.FirmwareCode, Vars: cfg.FirmwareVars},
				"arm64": {Code: cfg.FirmwareCodeARM64, Vars: cfg.FirmwareVarsARM64},
			}})
	}})
}
