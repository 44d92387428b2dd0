package view

import (
	"time"

	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// Snapshot is the snapshot object of `snapshot inspect` and `snapshot list -o json`: the
// snapshot's identity and the source VM's configuration at the top level.
type Snapshot struct {
	ID            string              `json:"id"`
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

	// Added by this implementation.
	SourceVM string `json:"source_vm,omitempty"` // empty for imported snapshots
	MaxCPU   int    `json:"max_cpu,omitempty"`
	Accel    string `json:"accel,omitempty"`
	Platform string `json:"platform,omitempty"` // the VM's; a clone runs on the same
	// Standby is the snapshot's standby pool (`snapshot standby`): its count and clone options.
	Standby *snapshot.StandbyPool `json:"standby,omitempty"`
}

// SnapshotOf builds the snapshot object of a record.
func SnapshotOf(s *snapshot.Snapshot) Snapshot {
	m := &s.Manifest
	v := Snapshot{ID: s.ID, Name: s.Name, Description: s.Description, Image: m.Image, ImageDigest: m.ImageDigest,
		ImageType: m.ImageKind, Hypervisor: m.Hypervisor, CPU: m.CPU, Memory: m.Memory, Storage: m.Storage, NICs: m.NICs,
		QueueSize: m.QueueSize, DiskQueueSize: m.DiskQueueSize, Network: m.Network, NoDirectIO: m.NoDirectIO,
		Windows: m.Windows, CreatedAt: s.CreatedAt, SourceVM: s.SourceVM, MaxCPU: m.MaxCPU, Accel: m.Accel, Platform: m.Platform,
		Standby: s.Standby}
	if len(m.ImageBlobIDs) > 0 {
		v.ImageBlobIDs = map[string]struct{}{}
		for _, id := range m.ImageBlobIDs {
			v.ImageBlobIDs[id] = struct{}{}
		}
	}
	return v
}

// SnapshotsOf builds snapshot objects; never nil.
func SnapshotsOf(snaps []snapshot.Snapshot) []Snapshot {
	out := make([]Snapshot, 0, len(snaps))
	for i := range snaps {
		out = append(out, SnapshotOf(&snaps[i]))
	}
	return out
}
