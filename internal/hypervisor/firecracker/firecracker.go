// Package firecracker is the Firecracker backend (FC ≥ 1.14, chosen by name with --fc): a
// translation of a VMSpec into Firecracker's REST API. The process runs inside the VM's network
// namespace (it opens TAPs by name) with a PTY as its stdin/stdout (the guest's serial console);
// everything about process lifetime is the shared runtime's (hypervisor.Run, StopProcess).
//
// Firecracker boots OCI images only: an uncompressed ELF kernel (the engine extracts it),
// raw disks, single-queue NICs, no UEFI and no Windows. A clone keeps its snapshot's vCPUs,
// memory and guest MACs; only the TAPs, the vsock socket and the disks are the clone's own.
package firecracker

import (
	"path/filepath"
	"runtime"
	"time"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// Name is the backend's name in VM records and on the command line.
const Name = "firecracker"

// Options configure the backend. Zero values mean the defaults.
type Options struct {
	Binary     string        // default "firecracker" (looked up on PATH)
	SocketWait time.Duration // how long a launch waits for the API socket (default 10s)
}

// Backend drives the firecracker binary.
type Backend struct {
	binary     string
	socketWait time.Duration
}

// New returns a Firecracker backend.
func New(o Options) *Backend {
	b := &Backend{binary: o.Binary, socketWait: o.SocketWait}
	if b.binary == "" {
		b.binary = "firecracker"
	}
	if b.socketWait <= 0 {
		b.socketWait = 10 * time.Second
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

// Firecracker's fixed device numbers (its virtio queues are not configurable).
const (
	queueSize = 256
	maxVCPUs  = 32 // MachineConfiguration.vcpu_count maximum in the API definition
	// maxNICs: every virtio-mmio device takes one of FC's 19 legacy IRQs (5..23 on x86), which
	// disks, balloon, entropy and vsock share; 8 NICs leave room for the layers and the COW.
	maxNICs = 8
	// minBalloonMemory: below it a balloon device is not worth its overhead (spec §10.1).
	minBalloonMemory = 256 << 20
)

// kernelArgs are what FC guests need per host architecture. reboot=k: the guest's reboot or
// poweroff ends the FC process; pci=off: virtio-mmio only; on x86 one legacy UART and no
// i8042 aux port, so the guest does not probe absent hardware; on aarch64 keep_bootcon keeps
// the early console until the UART driver takes over (Firecracker's documented boot_args).
var kernelArgs = map[string][]string{
	"amd64": {"reboot=k", "pci=off", "i8042.noaux", "8250.nr_uarts=1"},
	"arm64": {"reboot=k", "pci=off", "keep_bootcon"},
}

// Capabilities implements hypervisor.Backend.
func (b *Backend) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{
		Balloon:     true,
		TapsByName:  true,
		DisksByPath: true, // FC gives virtio-blk devices no serial
		// FC runs the host's architecture only (no CrossArch), so the host's decides: an x86
		// guest needs an uncompressed ELF vmlinux, an aarch64 guest the raw arm64 Image that
		// distributions ship as vmlinuz; both have an 8250 UART, ttyS0.
		KernelELF:  runtime.GOARCH == "amd64",
		Console:    "ttyS0",
		KernelArgs: kernelArgs[runtime.GOARCH],
		Limits: hypervisor.Limits{
			MinMemory: 64 << 20,
			MaxNICs:   maxNICs,
			// FC's virtio rings are always queueSize deep and not configurable: a requested
			// depth (the engine's default is 512) is accepted and ignored, as spec §10.1 says.
			NetQueueSize:  hypervisor.SizeRange{Min: queueSize, Max: 1024},
			DiskQueueSize: hypervisor.SizeRange{Min: queueSize, Max: 1024},
			MaxSerialLen:  20, // serials are not passed to FC at all (DisksByPath)
		},
	}
}

// Runtime files of one VM.
func apiPath(runDir string) string     { return filepath.Join(runDir, "api.sock") }
func consolePath(runDir string) string { return filepath.Join(runDir, "console.sock") }
func vsockPath(runDir string) string   { return filepath.Join(runDir, vsockName) }
func pidPath(runDir string) string     { return filepath.Join(runDir, "fc.pid") }
func cmdlinePath(runDir string) string { return filepath.Join(runDir, "cmdline") }

// vsockName is the vsock socket as FC knows it: relative to its working directory, the run dir.
const vsockName = "vsock.sock"

// diskLinkDir holds one symlink per drive, named as FC knows the drive (see drives.go).
func diskLinkDir(runDir string) string    { return filepath.Join(runDir, "disks") }
func logPath(logDir string) string        { return filepath.Join(logDir, "firecracker.log") }
func consoleLogPath(logDir string) string { return filepath.Join(logDir, "console.log") }

// api talks to the VM's API socket (no path prefix).
func api(runDir string) *rest.Client { return rest.New(apiPath(runDir), "") }

// ConsoleSocket implements hypervisor.Backend: the console relay's socket.
func (b *Backend) ConsoleSocket(vm hypervisor.VMRef) string { return consolePath(vm.RunDir) }

// ConsoleLog implements hypervisor.ConsoleLogger: the relay logs the serial console in full.
func (b *Backend) ConsoleLog(logDir string) string { return consoleLogPath(logDir) }

// Alive implements hypervisor.Backend.
func (b *Backend) Alive(vm hypervisor.VMRef) bool {
	return hypervisor.IsAlive(vm, b.plan(vm.RunDir, "").Owner())
}

func init() {
	hypervisor.Register(hypervisor.Registration{Name: Name, Auto: 0, NeedsKVM: true, New: func(cfg *config.Config) hypervisor.Backend {
		return New(Options{Binary: cfg.FCBinary, SocketWait: time.Duration(cfg.SocketWaitTimeoutSeconds) * time.Second})
	}})
}
