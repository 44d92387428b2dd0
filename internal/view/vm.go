package view

import (
	"time"

	"github.com/cocoonstack/cocoon/internal/engine"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/network"
)

// VM is the VM object: `vm inspect`, `vm list -o json`, create/run/clone/restore -o json and
// the "vm" member of `vm status --event --format json` lines.
type VM struct {
	ID             string              `json:"id"`
	Hypervisor     string              `json:"hypervisor,omitempty"`
	State          string              `json:"state"`
	Config         VMConfig            `json:"config"`
	PID            int                 `json:"pid"` // of the hypervisor process; 0 unless running or standby (or error with a live one)
	NetworkConfigs []NetworkConfig     `json:"network_configs,omitempty"`
	StorageConfigs []StorageConfig     `json:"storage_configs,omitempty"`
	FirstBooted    bool                `json:"first_booted"`
	SnapshotIDs    map[string]struct{} `json:"snapshot_ids,omitempty"`
	CreatedAt      time.Time           `json:"created_at"`
	UpdatedAt      time.Time           `json:"updated_at"`
	StartedAt      *time.Time          `json:"started_at,omitempty"`
	StoppedAt      *time.Time          `json:"stopped_at,omitempty"`
	BootConfig     *engine.BootConfig  `json:"boot_config,omitempty"`
	ImageBlobIDs   map[string]struct{} `json:"image_blob_ids,omitempty"`
	RunDir         string              `json:"run_dir"`
	LogDir         string              `json:"log_dir"`

	// Added by this implementation.
	Accel     string `json:"accel,omitempty"`    // kvm or tcg: what the running process uses
	DiskAIO   string `json:"disk_aio,omitempty"` // io_uring or threads: what the running process uses
	LastError string `json:"last_error,omitempty"`
	Agent     string `json:"agent,omitempty"` // guest agent: connected, absent or disabled (vm inspect only)
	// StandbyFor is the snapshot whose standby pool holds the VM (state standby).
	StandbyFor string `json:"standby_for,omitempty"`
}

// VMConfig is what the VM was created with.
type VMConfig struct {
	Name          string `json:"name"`
	CPU           int    `json:"cpu"`
	Memory        int64  `json:"memory"`  // bytes
	Storage       int64  `json:"storage"` // COW disk bytes
	QueueSize     int    `json:"queue_size,omitempty"`
	DiskQueueSize int    `json:"disk_queue_size,omitempty"`
	Image         string `json:"image"`
	ImageDigest   string `json:"image_digest,omitempty"`
	ImageType     string `json:"image_type,omitempty"` // oci | cloudimg
	Network       string `json:"network,omitempty"`    // CNI conflist name
	NoDirectIO    bool   `json:"no_direct_io,omitempty"`
	Windows       bool   `json:"windows,omitempty"`

	// Added by this implementation.
	NICs   int    `json:"nics"`
	MaxCPU int    `json:"max_cpu,omitempty"`
	Bridge string `json:"bridge,omitempty"`
	Accel  string `json:"accel,omitempty"` // as requested: auto, kvm or tcg
	// linux/amd64 or linux/arm64; empty for VMs made before platforms were recorded (the host's)
	Platform string `json:"platform,omitempty"`
}

// NetworkConfig is one NIC.
type NetworkConfig struct {
	TAP       string   `json:"tap"`
	MAC       string   `json:"mac"`
	NumQueues int      `json:"num_queues"` // virtio queues: 2 per TAP queue pair (rx + tx)
	QueueSize int      `json:"queue_size"`
	Backend   string   `json:"backend,omitempty"` // cni | bridge
	BridgeDev string   `json:"bridge_dev,omitempty"`
	NetnsPath string   `json:"netns_path,omitempty"`
	Network   *Network `json:"network,omitempty"` // nil: the guest uses DHCP

	// Added by this implementation.
	IfName string   `json:"if_name,omitempty"`
	MTU    int      `json:"mtu,omitempty"`
	DNS    []string `json:"dns,omitempty"`
}

// Network is a NIC's guest-visible IPv4 configuration.
type Network struct {
	IP      string `json:"ip,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Prefix  int    `json:"prefix,omitempty"`
}

// StorageConfig is one disk, in attach order.
type StorageConfig struct {
	Path     string `json:"path"`
	RO       bool   `json:"ro"`
	Serial   string `json:"serial"`
	Role     string `json:"role"`                // layer | cow | cidata | data
	DirectIO *bool  `json:"direct_io,omitempty"` // data disks only

	// Added by this implementation.
	Format string `json:"format,omitempty"` // raw | qcow2
}

// VMOf builds the VM object of a record.
func VMOf(vm *engine.VM) VM {
	v := VM{
		ID: vm.ID, Hypervisor: vm.Hypervisor, State: string(vm.State),
		Config: VMConfig{
			Name: vm.Name, CPU: vm.Config.CPU, Memory: vm.Config.Memory, Storage: vm.Config.Storage,
			QueueSize: vm.Config.QueueSize, DiskQueueSize: vm.Config.DiskQueueSize,
			Image: vm.Config.Image, ImageDigest: vm.Config.ImageDigest, ImageType: vm.Config.ImageKind,
			Network: vm.Config.Network, NoDirectIO: vm.Config.NoDirectIO, Windows: vm.Config.Windows,
			NICs: vm.Config.NICs, MaxCPU: vm.Config.MaxCPU, Bridge: vm.Config.Bridge, Accel: vm.Config.Accel, Platform: vm.Config.Platform,
		},
		FirstBooted: vm.FirstBooted, SnapshotIDs: vm.SnapshotIDs,
		CreatedAt: vm.CreatedAt, UpdatedAt: vm.UpdatedAt, StartedAt: vm.StartedAt, StoppedAt: vm.StoppedAt,
		BootConfig: vm.Boot, ImageBlobIDs: vm.ImageBlobIDs, RunDir: vm.RunDir, LogDir: vm.LogDir,
		Accel: vm.Accel, DiskAIO: vm.DiskAIO, LastError: vm.LastError, StandbyFor: vm.StandbyFor,
	}
	// An error record names a hypervisor only when reconciliation found one left by an
	// interrupted command: the user must see which process to expect.
	if vm.State == engine.StateRunning || vm.State == engine.StateError || vm.State == engine.StateStandby {
		v.PID = vm.PID
	}
	for _, n := range vm.Networks {
		v.NetworkConfigs = append(v.NetworkConfigs, nicOf(n))
	}
	for _, d := range vm.Disks {
		v.StorageConfigs = append(v.StorageConfigs, diskOf(d))
	}
	return v
}

// VMsOf builds VM objects; never nil, so an empty list prints as [].
func VMsOf(vms []engine.VM) []VM {
	out := make([]VM, 0, len(vms))
	for i := range vms {
		out = append(out, VMOf(&vms[i]))
	}
	return out
}

func nicOf(n network.Attachment) NetworkConfig {
	c := NetworkConfig{TAP: n.Tap, MAC: n.MAC, NumQueues: 2 * n.Queues, QueueSize: n.QueueSize, Backend: n.Backend,
		BridgeDev: n.BridgeDev, NetnsPath: n.NetnsPath, IfName: n.IfName, MTU: n.MTU, DNS: n.DNS}
	if n.IP != "" {
		c.Network = &Network{IP: n.IP, Gateway: n.Gateway, Prefix: n.Prefix}
	}
	return c
}

func diskOf(d hypervisor.Disk) StorageConfig {
	s := StorageConfig{Path: d.Path, RO: d.ReadOnly, Serial: d.Serial, Role: d.Role, Format: string(d.Format)}
	if d.Role == "data" {
		s.DirectIO = &d.DirectIO
	}
	return s
}
