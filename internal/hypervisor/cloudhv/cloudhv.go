// Package cloudhv is the Cloud Hypervisor backend (v51 or newer): a cold boot is one command
// line (spec §9.2), everything after it goes through CH's REST API on the VM's api.sock
// (pause, resume, snapshot, restore, power button, NIC swap, resize). It only translates;
// launch, ownership checks and stop escalation are internal/hypervisor's.
package cloudhv

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Name is the backend's name in VM records and on the command line.
const Name = "cloud-hypervisor"

// Options configure the backend. Zero values mean the defaults.
type Options struct {
	Binary     string        // default "cloud-hypervisor" (looked up on PATH)
	Firmware   string        // CLOUDHV.fd for UEFI guests
	SocketWait time.Duration // how long a launch waits for the API socket (default 10s)
	// RestoreWait bounds StartFromSnapshot: launch, vm.restore, NIC swap, growth (default 10m,
	// the single-shot restore timeout of spec §9.3).
	RestoreWait time.Duration
}

// Backend drives cloud-hypervisor.
type Backend struct {
	binary, firmware        string
	socketWait, restoreWait time.Duration
}

// New returns a Cloud Hypervisor backend.
func New(o Options) *Backend {
	b := &Backend{binary: o.Binary, firmware: o.Firmware, socketWait: o.SocketWait, restoreWait: o.RestoreWait}
	if b.binary == "" {
		b.binary = "cloud-hypervisor"
	}
	if b.socketWait <= 0 {
		b.socketWait = 10 * time.Second
	}
	if b.restoreWait <= 0 {
		b.restoreWait = 10 * time.Minute
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

// Name implements hypervisor.Backend.
func (b *Backend) Name() string { return Name }

// Capabilities implements hypervisor.Backend.
func (b *Backend) Capabilities() hypervisor.Capabilities {
	// vCPUs grow by vm.resize up to max_vcpus; memory by ACPI hot-add into the hotplug_size a
	// cold boot reserves; NICs by vm.remove-device + vm.add-net. The direct-boot console is
	// virtio-console (hvc0); CLOUDHV.fd keeps no separate variables file.
	return hypervisor.Capabilities{UEFI: true, Qcow2: true, Windows: true, MultiQueue: true, Balloon: true,
		ResizeOnClone: true, MemoryGrowOnClone: true, NICHotSwap: true, Console: "hvc0", Limits: limits}
}

// Firmware implements hypervisor.FirmwareLocator: CLOUDHV.fd from the configuration.
func (b *Backend) Firmware(arch string) (code, vars string) { return b.firmware, "" }

// Runtime files of one VM.
func apiPath(runDir string) string        { return filepath.Join(runDir, "api.sock") }
func pidPath(runDir string) string        { return filepath.Join(runDir, "cloud-hypervisor.pid") }
func cmdlinePath(runDir string) string    { return filepath.Join(runDir, "cmdline") }
func consolePath(runDir string) string    { return filepath.Join(runDir, "console.sock") }
func serialPath(runDir string) string     { return filepath.Join(runDir, "serial.sock") }
func vsockPath(runDir string) string      { return filepath.Join(runDir, "vsock.sock") }
func logPath(logDir string) string        { return filepath.Join(logDir, "cloud-hypervisor.log") }
func consoleLogPath(logDir string) string { return filepath.Join(logDir, "console.log") }

// ConsoleSocket implements hypervisor.Backend: the console relay's socket.
func (b *Backend) ConsoleSocket(vm hypervisor.VMRef) string { return consolePath(vm.RunDir) }

// ConsoleLog implements hypervisor.ConsoleLogger: the relay logs the console in full.
func (b *Backend) ConsoleLog(logDir string) string { return consoleLogPath(logDir) }

// Alive implements hypervisor.Backend.
func (b *Backend) Alive(vm hypervisor.VMRef) bool {
	return hypervisor.IsAlive(vm, b.plan(vm.RunDir, "").Owner())
}

// plan is the part of a launch plan that later commands (stop, alive) need too. The restore
// files (config.json, state.json, the memory link) only serve one launch: they go with it.
func (b *Backend) plan(runDir, logDir string) hypervisor.Plan {
	return hypervisor.Plan{Backend: Name, RunDir: runDir, Binary: b.binary, Log: logPath(logDir),
		PIDFile: pidPath(runDir), Control: apiPath(runDir), Cmdline: cmdlinePath(runDir), Wait: b.socketWait,
		Runtime: []string{apiPath(runDir), pidPath(runDir), consolePath(runDir), serialPath(runDir), vsockPath(runDir),
			filepath.Join(runDir, configFile), filepath.Join(runDir, stateFile), filepath.Join(runDir, memoryFile)}}
}

// Start implements hypervisor.Backend.
func (b *Backend) Start(ctx context.Context, spec hypervisor.VMSpec) (hypervisor.Process, error) {
	if err := b.validate(spec, false); err != nil {
		return hypervisor.Process{}, err
	}
	args, files := buildArgs(spec, false)
	p := b.plan(spec.RunDir, spec.LogDir)
	p.VMID, p.Args, p.Files = spec.ID, args, files
	ctx, cancel := context.WithTimeout(ctx, b.socketWait+time.Minute)
	defer cancel()
	api := newAPI(spec.RunDir)
	proc, err := hypervisor.Run(ctx, p, api.ready, func(ctx context.Context) error {
		return startConsole(ctx, api, spec)
	})
	if err != nil {
		return proc, fmt.Errorf("start %w", err)
	}
	return proc, nil
}

// stopCallTimeout bounds the API calls Stop makes before it signals.
const stopCallTimeout = 10 * time.Second

// Stop implements hypervisor.Backend (spec §9.6). UEFI guests get the ACPI power button and
// the stop timeout; direct-boot guests (and --force) get vm.shutdown, which stops the vCPUs
// but leaves the VMM process up, so the signals follow at once.
func (b *Backend) Stop(ctx context.Context, vm hypervisor.VMRef, opts hypervisor.StopOptions) error {
	p := b.plan(vm.RunDir, "")
	if !b.Alive(vm) {
		return hypervisor.StopProcess(ctx, vm, p, nil, opts)
	}
	api := newAPI(vm.RunDir)
	// A hung VMM must not hold the stop up: its signals come after these calls.
	callCtx, cancel := context.WithTimeout(ctx, stopCallTimeout)
	defer cancel()
	var info vmInfo
	uefi := false
	if !opts.Force {
		var err error
		info, err = api.info(callCtx)
		uefi = err == nil && info.Config.Payload.Firmware != ""
	}
	if !uefi {
		if err := api.put(callCtx, "/vm.shutdown", nil); err != nil {
			slog.Warn("vm.shutdown before terminating failed", "vm", vm.ID, "err", err)
		}
		opts.Force = true
		return hypervisor.StopProcess(ctx, vm, p, nil, opts)
	}
	powerButton := func(ctx context.Context) error {
		// A paused guest (a snapshot that never resumed) cannot see the button.
		if info.State == "Paused" {
			if err := api.put(ctx, "/vm.resume", nil); err != nil {
				return err
			}
		}
		return api.put(ctx, "/vm.power-button", nil)
	}
	return hypervisor.StopProcess(ctx, vm, p, powerButton, opts)
}

// DebugCommand implements hypervisor.Backend: the cold-boot command line with TAPs named
// instead of passed as fds, so it runs from a shell inside the VM's netns.
func (b *Backend) DebugCommand(spec hypervisor.VMSpec) (string, error) {
	if err := b.validate(spec, true); err != nil {
		return "", err
	}
	args, _ := buildArgs(spec, true)
	return hypervisor.ShellJoin(b.binary, args, true), nil
}

func init() {
	hypervisor.Register(hypervisor.Registration{Name: Name, Auto: 2, NeedsKVM: true, New: func(cfg *config.Config) hypervisor.Backend {
		return New(Options{Binary: cfg.CHBinary, Firmware: cfg.CHFirmware,
			SocketWait: time.Duration(cfg.SocketWaitTimeoutSeconds) * time.Second})
	}})
}

// fileExists is true for an existing path (following links).
func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
