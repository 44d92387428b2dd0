package engine

import (
	"fmt"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/network"
	"github.com/cocoonstack/cocoon/internal/store"
)

// State is a VM's lifecycle state.
type State string

// VM states. creating → created → running → stopped, and error from start/stop failures.
// A standby is a clone made ahead of demand for a snapshot's standby pool: its hypervisor
// runs with the guest paused, it is hidden from vm list, and a clone of that snapshot takes it
// over (standby → running) instead of starting a hypervisor.
const (
	StateCreating State = "creating"
	StateCreated  State = "created"
	StateRunning  State = "running"
	StateStopped  State = "stopped"
	StateError    State = "error"
	StateStandby  State = "standby"
)

// transitions is the state machine: which states an operation may start from.
var transitions = map[string][]State{
	"start":   {StateCreated, StateStopped, StateError},
	"stop":    {StateRunning, StateError},
	"restore": {StateRunning},
}

// checkTransition refuses an operation from a state the machine does not allow.
func checkTransition(op string, vm *VM) error {
	for _, s := range transitions[op] {
		if vm.State == s {
			return nil
		}
	}
	switch {
	case vm.State == StateCreating:
		return fmt.Errorf("VM %s is still being created: wait for it, or remove it with 'cocoon vm rm -f %s'", vm.Name, vm.ID)
	case vm.State == StateStandby:
		return fmt.Errorf("VM %s is a standby clone of snapshot %s: 'cocoon vm clone' takes it over", vm.Name, vm.StandbyFor)
	default:
		return fmt.Errorf("cannot %s VM %s in state %s", op, vm.Name, vm.State)
	}
}

// VMConfig is what the user asked for; it is what a snapshot inherits.
type VMConfig struct {
	CPU           int    `json:"cpu"`
	MaxCPU        int    `json:"max_cpu,omitempty"` // hot-add ceiling (host cores at creation)
	Memory        int64  `json:"memory"`
	Storage       int64  `json:"storage"`
	NICs          int    `json:"nics"`
	QueueSize     int    `json:"queue_size,omitempty"`
	DiskQueueSize int    `json:"disk_queue_size,omitempty"`
	Image         string `json:"image"`
	ImageDigest   string `json:"image_digest,omitempty"`
	ImageKind     string `json:"image_type"`
	Network       string `json:"network,omitempty"`
	Bridge        string `json:"bridge,omitempty"`
	NoDirectIO    bool   `json:"no_direct_io,omitempty"`
	Windows       bool   `json:"windows,omitempty"`
	Accel         string `json:"accel,omitempty"`
	Platform      string `json:"platform,omitempty"` // linux/ARCH of the guest; "" = the host's
	NoAgent       bool   `json:"no_agent,omitempty"` // no guest agent delivered
}

// BootConfig is how the VM boots: a kernel (OCI images) or UEFI firmware (cloud images).
type BootConfig struct {
	KernelPath   string `json:"kernel_path,omitempty"`
	InitrdPath   string `json:"initrd_path,omitempty"`
	Cmdline      string `json:"cmdline,omitempty"`
	FirmwarePath string `json:"firmware_path,omitempty"`
	FirmwareVars string `json:"firmware_vars,omitempty"`
}

// VM is one VM record of the index.
type VM struct {
	ID          string               `json:"id"`
	Name        string               `json:"name"`
	Hypervisor  string               `json:"hypervisor"`
	State       State                `json:"state"`
	LastError   string               `json:"last_error,omitempty"`
	Config      VMConfig             `json:"config"`
	Accel       string               `json:"accel,omitempty"`
	DiskAIO     string               `json:"disk_aio,omitempty"` // of the last launch: io_uring or threads
	PID         int                  `json:"pid,omitempty"`
	PIDStart    uint64               `json:"pid_start_time,omitempty"`
	Networks    []network.Attachment `json:"network_configs,omitempty"`
	Disks       []hypervisor.Disk    `json:"storage_configs,omitempty"`
	Boot        *BootConfig          `json:"boot_config,omitempty"`
	FirstBooted bool                 `json:"first_booted"`
	// CidataAttached says the running process has the cloud-init disk (a first boot, or a clone
	// of one): snapshots must reproduce the exact device set.
	CidataAttached bool                `json:"cidata_attached,omitempty"`
	ImageBlobIDs   map[string]struct{} `json:"image_blob_ids,omitempty"`
	SnapshotIDs    map[string]struct{} `json:"snapshot_ids,omitempty"`
	// StandbyFor is the snapshot whose standby pool holds this VM (state standby only).
	StandbyFor string     `json:"standby_for,omitempty"`
	RunDir     string     `json:"run_dir"`
	LogDir     string     `json:"log_dir"`
	MemoryDir  string     `json:"memory_dir,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	StoppedAt  *time.Time `json:"stopped_at,omitempty"`
}

// IPs lists the VM's IPv4 addresses.
func (vm *VM) IPs() []string {
	var ips []string
	for _, n := range vm.Networks {
		if n.IP != "" {
			ips = append(ips, n.IP)
		}
	}
	return ips
}

func (vm *VM) maxCPU() int { return max(vm.Config.MaxCPU, vm.Config.CPU) }

func (vm *VM) ref() hypervisor.VMRef {
	return hypervisor.VMRef{ID: vm.ID, RunDir: vm.RunDir, PID: vm.PID, StartTime: vm.PIDStart}
}

const vmSchema = 1

// vmIndex is the VM index file: records by ID and a unique name → ID map.
type vmIndex struct {
	store.Header
	VMs   map[string]*VM    `json:"vms"`
	Names map[string]string `json:"names"`
}

func (x *vmIndex) Init() {
	if x.VMs == nil {
		x.VMs = map[string]*VM{}
	}
	if x.Names == nil {
		x.Names = map[string]string{}
	}
}
