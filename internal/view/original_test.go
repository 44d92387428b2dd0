package view

import "time"

// The original Cocoon's public JSON types (types/vm.go, network.go, storage.go, snapshot.go,
// images.go), copied field for field: the contract the views must keep.

type origVM struct {
	ID             string               `json:"id"`
	Hypervisor     string               `json:"hypervisor,omitempty"`
	State          string               `json:"state"`
	Config         origVMConfig         `json:"config"`
	PID            int                  `json:"pid"`
	SocketPath     string               `json:"socket_path,omitempty"`
	NetworkConfigs []*origNetworkConfig `json:"network_configs,omitempty"`
	StorageConfigs []*origStorageConfig `json:"storage_configs,omitempty"`
	FirstBooted    bool                 `json:"first_booted"`
	SnapshotIDs    map[string]struct{}  `json:"snapshot_ids,omitempty"`
	CreatedAt      time.Time            `json:"created_at"`
	UpdatedAt      time.Time            `json:"updated_at"`
	StartedAt      *time.Time           `json:"started_at,omitempty"`
	StoppedAt      *time.Time           `json:"stopped_at,omitempty"`
	// VMRecord's additions (spec §5.3).
	BootConfig   *origBootConfig     `json:"boot_config,omitempty"`
	ImageBlobIDs map[string]struct{} `json:"image_blob_ids,omitempty"`
	RunDir       string              `json:"run_dir"`
	LogDir       string              `json:"log_dir"`
}

type origVMConfig struct {
	Name          string `json:"name"`
	CPU           int    `json:"cpu"`
	Memory        int64  `json:"memory"`
	Storage       int64  `json:"storage"`
	QueueSize     int    `json:"queue_size,omitempty"`
	DiskQueueSize int    `json:"disk_queue_size,omitempty"`
	Image         string `json:"image"`
	ImageDigest   string `json:"image_digest,omitempty"`
	ImageType     string `json:"image_type,omitempty"`
	Network       string `json:"network,omitempty"`
	NoDirectIO    bool   `json:"no_direct_io,omitempty"`
	Windows       bool   `json:"windows,omitempty"`
}

type origBootConfig struct {
	KernelPath   string `json:"kernel_path,omitempty"`
	InitrdPath   string `json:"initrd_path,omitempty"`
	Cmdline      string `json:"cmdline,omitempty"`
	FirmwarePath string `json:"firmware_path,omitempty"`
}

type origNetworkConfig struct {
	TAP       string       `json:"tap"`
	MAC       string       `json:"mac"`
	NumQueues int          `json:"num_queues"`
	QueueSize int          `json:"queue_size"`
	Backend   string       `json:"backend,omitempty"`
	BridgeDev string       `json:"bridge_dev,omitempty"`
	NetnsPath string       `json:"netns_path,omitempty"`
	Network   *origNetwork `json:"network,omitempty"`
}

type origNetwork struct {
	IP      string `json:"ip,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	Prefix  int    `json:"prefix,omitempty"`
}

type origStorageConfig struct {
	Path       string `json:"path"`
	RO         bool   `json:"ro"`
	Serial     string `json:"serial"`
	Role       string `json:"role"`
	MountPoint string `json:"mount_point,omitempty"`
	FSType     string `json:"fstype,omitempty"`
	DirectIO   *bool  `json:"direct_io,omitzero"`
}

type origSnapshot struct {
	ID            string              `json:"id,omitempty"`
	Name          string              `json:"name"`
	Description   string              `json:"description,omitempty"`
	Image         string              `json:"image,omitempty"`
	ImageDigest   string              `json:"image_digest,omitempty"`
	ImageType     string              `json:"image_type,omitempty"`
	ImageBlobIDs  map[string]struct{} `json:"image_blob_ids,omitempty"`
	Hypervisor    string              `json:"hypervisor,omitempty"`
	CPU           int                 `json:"cpu,omitempty"`
	Memory        int64               `json:"memory,omitempty"`
	Storage       int64               `json:"storage,omitempty"`
	NICs          int                 `json:"nics,omitempty"`
	QueueSize     int                 `json:"queue_size,omitempty"`
	DiskQueueSize int                 `json:"disk_queue_size,omitempty"`
	Network       string              `json:"network,omitempty"`
	NoDirectIO    bool                `json:"no_direct_io,omitempty"`
	Windows       bool                `json:"windows,omitempty"`
	CreatedAt     time.Time           `json:"created_at"`
}

type origImage struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Size      int64     `json:"size"`
	CreatedAt time.Time `json:"created_at"`
}

type origEvent struct {
	Event string `json:"event"`
	VM    origVM `json:"vm"`
}
