// Package hypervisor is the backend-neutral contract between the engine and the hypervisor
// drivers (qemu, cloudhypervisor, firecracker), plus the process handling they share: detached
// launch, PID files, the ownership check that guards every signal, and stop escalation.
//
// A driver only translates a VMSpec into its hypervisor's language and drives its control API;
// everything about process lifetime lives here once.
package hypervisor

import (
	"context"
	"io"
	"os"
	"time"
)

// DiskFormat is the on-disk format of a disk image.
type DiskFormat string

// Disk formats a backend may accept (see Capabilities.Qcow2).
const (
	FormatRaw   DiskFormat = "raw"
	FormatQcow2 DiskFormat = "qcow2"
)

// Disk is one block device, in guest order.
type Disk struct {
	Path     string
	Format   DiskFormat
	ReadOnly bool
	Serial   string // virtio-blk serial (≤ 20 bytes); empty for none
	DirectIO bool   // bypass the host page cache (O_DIRECT)
	Role     string // layer | cow | cidata | data: for logs and snapshot file classes
	// Data disks only: the filesystem made at creation (ext4 | none) and where cloud-init
	// mounts it in cloud images ("" = not mounted).
	FSType     string `json:",omitempty"`
	MountPoint string `json:",omitempty"`
}

// NIC is one virtio-net device backed by an already-configured TAP device.
type NIC struct {
	MAC string
	// Files are open TAP queue fds (multi-queue, vnet_hdr), one per queue pair. The backend
	// passes them to the hypervisor; the caller keeps ownership and may close them after Start.
	Files     []*os.File
	TapName   string // the TAP's name, used where fds cannot be passed (DebugCommand)
	Queues    int    // queue pairs; 0 means len(Files)
	QueueSize int    // ring size per queue; 0 lets the backend choose
	MTU       int    // advertised to the guest when > 0
	// Netns is the network namespace the TAP lives in. Backends that open TAPs by name
	// (Cloud Hypervisor, Firecracker) launch the hypervisor inside it (Plan.Netns).
	Netns string
}

// Boot says how the guest starts: a kernel (direct boot) or UEFI firmware.
type Boot struct {
	Kernel, Initrd, Cmdline string // direct boot
	Firmware                string // UEFI code file (read-only)
	FirmwareVars            string // per-VM writable UEFI variables copy
}

// VMSpec is everything a backend needs to cold-boot one VM.
type VMSpec struct {
	ID, Name string
	CPUs     int
	// MaxCPUs is how many vCPUs the VM can ever have (0 = CPUs). A backend that hot-adds vCPUs
	// on clone sizes its CPU topology for this many at cold boot.
	MaxCPUs     int
	MemoryBytes int64
	Boot        Boot
	Disks       []Disk
	NICs        []NIC
	RunDir      string // per-VM runtime dir (sockets, pid, cmdline); must exist
	LogDir      string // per-VM log dir; must exist
	// MemoryDir holds the file backing guest RAM (tmpfs such as /dev/shm/cocoon, or a hugetlbfs
	// mount when HugePages), so snapshots and clones can share it; must exist.
	MemoryDir     string
	HugePages     bool
	Balloon       bool
	BalloonBytes  int64 // memory the balloon takes from the guest at boot; 0 = a quarter
	Windows       bool
	DiskQueueSize int    // 0 = backend default
	Accel         string // auto | kvm | tcg (backends without a choice ignore it)
	Arch          string // guest architecture, GOARCH style (amd64, arm64); "" = amd64
	Agent         bool   // give the guest agent a channel (AgentChannel)
}

// Capabilities lets the engine refuse unsupported requests up front.
type Capabilities struct {
	UEFI, Qcow2, Windows, MultiQueue, Balloon bool
	// ResizeOnClone: a clone or restore may have more vCPUs than its snapshot (up to its MaxCPUs).
	ResizeOnClone bool
	// MemoryGrowOnClone: a clone or restore may have more memory than its snapshot.
	MemoryGrowOnClone bool
	// NICHotSwap: a clone gets new NICs (new MACs and TAPs) in place of the snapshot's, and
	// may have more NICs than the snapshot (hot-added; the backend bounds how many).
	NICHotSwap bool
	// Console is the guest's console device under direct kernel boot ("" = the platform's
	// first serial port: ttyS0, or ttyAMA0 on arm64). Cloud Hypervisor's is hvc0.
	Console string
	// KernelELF: the hypervisor boots only an uncompressed ELF kernel (vmlinux); the engine
	// extracts one from the image's bzImage and caches it per image.
	KernelELF bool
	// DisksByPath: the guest sees no disk serials, so the kernel command line names disks by
	// position (/dev/vda, /dev/vdb, … in attach order) instead of by serial.
	DisksByPath bool
	// KernelArgs are kernel command-line arguments this hypervisor's guests need.
	KernelArgs []string
	// FirmwareVars: UEFI boot takes a per-VM writable copy of a variables file (QEMU's
	// OVMF_VARS); firmware without one (Cloud Hypervisor's CLOUDHV.fd) leaves it false.
	FirmwareVars bool
	// CrossArch: runs guests of another architecture than the host's (QEMU emulates them
	// under TCG); KVM-only hypervisors run the host's architecture alone.
	CrossArch bool
	Limits    Limits
}

// FirmwareLocator is implemented by backends that boot UEFI firmware: which files, from the
// backend's configuration, boot guests of arch (GOARCH style). vars is "" when the firmware
// has no variables file.
type FirmwareLocator interface {
	Firmware(arch string) (code, vars string)
}

// Process identifies a launched hypervisor; the engine records it in the VM record.
type Process struct {
	PID       int
	StartTime uint64 // field 22 of /proc/<pid>/stat: tells a reused PID apart
	Binary    string
	Accel     string // accelerator actually used (qemu: kvm or tcg)
	DiskAIO   string // how disk I/O is submitted (qemu: io_uring or threads)
}

// StopOptions tune Stop. Zero values mean the defaults below.
type StopOptions struct {
	Force     bool          // skip the graceful request
	Timeout   time.Duration // wait for a graceful exit (default DefaultStopTimeout)
	TermGrace time.Duration // SIGTERM → SIGKILL delay (default DefaultTermGrace)
	// Request, when set, replaces the backend's graceful power-off request: the engine asks
	// the guest agent to power off a machine that has no power button (PowerButton).
	Request func(ctx context.Context) error
}

// Stop timing defaults (spec §16.6).
const (
	DefaultStopTimeout = 30 * time.Second
	DefaultTermGrace   = 5 * time.Second
	// killWait bounds the wait after SIGKILL; a process surviving it is stuck in the kernel.
	killWait = 5 * time.Second
)

// VMRef is what a later CLI process knows about a running VM: its record, not a child handle.
// PID 0 means "read it from the backend's PID file"; StartTime 0 skips the start-time check.
type VMRef struct {
	ID        string
	RunDir    string
	PID       int
	StartTime uint64
}

// Backend is one hypervisor driver.
type Backend interface {
	Name() string
	Capabilities() Capabilities
	// Available reports why the backend cannot run here (binary missing, …), or nil.
	Available() error
	// Start launches the hypervisor detached from the caller and returns once its control API
	// answers; on failure nothing is left running and the error names the log file.
	Start(ctx context.Context, spec VMSpec) (Process, error)
	// Stop asks the guest to power off (unless Force), then escalates to SIGTERM and SIGKILL.
	// A VM that is not running (or whose PID now belongs to another process) is already
	// stopped: Stop cleans its runtime files and returns nil without signalling anyone.
	Stop(ctx context.Context, vm VMRef, opts StopOptions) error
	// Alive is true when the VM's PID is alive and is this VM's hypervisor.
	Alive(vm VMRef) bool
	ConsoleSocket(vm VMRef) string
	// DebugCommand is a copy-pasteable shell command that boots spec by hand.
	DebugCommand(spec VMSpec) (string, error)
}

// AgentChannel is implemented by backends that give the guest agent (cmd/cocoon-agent) a
// host-side channel: QEMU a pool of virtio-serial ports, Cloud Hypervisor and Firecracker
// their hybrid vsock (a unix socket and "CONNECT <port>").
type AgentChannel interface {
	// AgentConnected says whether the guest agent has opened its channel.
	AgentConnected(ctx context.Context, vm VMRef) (bool, error)
	// DialAgent opens a stream for one agent session; closing it ends the session.
	DialAgent(ctx context.Context, vm VMRef) (io.ReadWriteCloser, error)
}

// PowerButton is implemented by backends some of whose machines have no power button the
// guest reacts to (QEMU's arm64 virt machine booted without firmware has no ACPI); the engine
// then asks the guest agent to power off, as libvirt's agent shutdown mode does.
type PowerButton interface {
	HasPowerButton(vm VMRef) bool
}

// ConsoleLogger is implemented by backends that record the guest console to a file.
type ConsoleLogger interface {
	// ConsoleLog is the console log of the VM whose log dir is logDir.
	ConsoleLog(logDir string) string
}
