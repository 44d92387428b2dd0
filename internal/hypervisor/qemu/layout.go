package qemu

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/store"
)

// layout is the guest-visible machine of a running QEMU: what the destination of a migration
// stream must rebuild exactly, or the stream does not load. It depends on the VM's history
// (a clone keeps its snapshot's boot topology and disk queues, gets NICs swapped and vCPUs
// hot-added), so it is recorded in the run dir at every launch and change, and copied into
// every state file, instead of being re-derived from the VM's current configuration.
type layout struct {
	Arch        string    `json:"arch,omitempty"` // guest architecture; "" = amd64
	Accel       string    `json:"accel"`          // vCPU state of kvm and tcg differ
	BootCPUs    int       `json:"boot_cpus"`
	MaxCPUs     int       `json:"max_cpus"`
	HotCPUs     []hotCPU  `json:"hot_cpus,omitempty"`      // in plug order
	MemoryBytes int64     `json:"memory_bytes"`            // boot RAM, without DIMMs
	MemSlots    int       `json:"mem_slots,omitempty"`     // pc-dimm slots; 0: no memory hot-add
	MaxMemBytes int64     `json:"max_mem_bytes,omitempty"` // guest address space for hot-add
	DIMMs       []dimm    `json:"dimms,omitempty"`         // hot-added memory, in plug order
	RAM         ramLayout `json:"ram"`
	// RootPorts is the number of PCIe root ports (NICs plus spares); 0 in layouts recorded
	// before it was, which had len(NICs)+spareRootPorts.
	RootPorts  int         `json:"root_ports,omitempty"`
	UEFI       bool        `json:"uefi"`
	Balloon    bool        `json:"balloon"`
	Disks      []diskQueue `json:"disks"`
	NICs       []nicLayout `json:"nics"`
	AgentPorts int         `json:"agent_ports,omitempty"` // virtio-serial ports of the guest agent
}

// ramLayout is the file behind guest RAM. Shared (share=on) means the file is the RAM, so a
// snapshot skips it (x-ignore-shared) and copies the file instead; otherwise (a clone's
// private mapping of its snapshot's file) RAM must travel in the state stream.
type ramLayout struct {
	File   string `json:"file"`
	Shared bool   `json:"shared"`
}

// hotCPU is one hot-added vCPU: a QEMU device with the topology properties QEMU listed for
// its slot (query-hotpluggable-cpus: socket-id, core-id, thread-id, …, all integers).
type hotCPU struct {
	Driver string           `json:"driver"`
	ID     string           `json:"id"`
	Props  map[string]int64 `json:"props"`
}

type diskQueue struct {
	Queues    int    `json:"queues"`
	QueueSize int    `json:"queue_size"`
	Bus       string `json:"bus,omitempty"` // root port of a hot-plugged disk; "" = on pcie.0
}

type nicLayout struct {
	MAC       string `json:"mac"`
	Queues    int    `json:"queues"`
	QueueSize int    `json:"queue_size"`
	MTU       int    `json:"mtu,omitempty"`
}

// rootPorts is how many PCIe root ports the machine has.
func (l layout) rootPorts() int {
	if l.RootPorts == 0 {
		return len(l.NICs) + spareRootPorts
	}
	return l.RootPorts
}

// cpus is how many vCPUs the guest has.
func (l layout) cpus() int { return l.BootCPUs + len(l.HotCPUs) }

// coldLayout is the machine a cold boot of spec gets.
func coldLayout(spec hypervisor.VMSpec, accel string) layout {
	l := layout{
		Arch: spec.Arch, Accel: accel, BootCPUs: spec.CPUs, MaxCPUs: maxCPUs(spec), MemoryBytes: spec.MemoryBytes,
		RootPorts: len(spec.NICs) + spareRootPorts,
		RAM:       ramLayout{File: ramPath(spec), Shared: true},
		UEFI:      spec.Boot.Firmware != "", Balloon: spec.Balloon,
	}
	if spec.Arch == "" || spec.Arch == "amd64" { // pc-dimm hot-add: q35 only
		l.MemSlots, l.MaxMemBytes = memSlots, maxMemFor(spec.MemoryBytes)
	}
	if a, _ := archOf(spec.Arch); len(a.hotCPU) == 0 {
		l.MaxCPUs = spec.CPUs // no vCPU hot-plug on this machine type
	}
	if spec.Agent {
		l.AgentPorts = agentPorts
	}
	queueSize := spec.DiskQueueSize
	if queueSize == 0 {
		queueSize = defaultDiskQueueSize
	}
	for range spec.Disks {
		l.Disks = append(l.Disks, diskQueue{Queues: spec.CPUs, QueueSize: queueSize})
	}
	for _, n := range spec.NICs {
		l.NICs = append(l.NICs, nicLayoutOf(n))
	}
	return l
}

func nicLayoutOf(n hypervisor.NIC) nicLayout {
	queueSize := n.QueueSize
	if queueSize == 0 {
		queueSize = defaultNetQueueSize
	}
	return nicLayout{MAC: n.MAC, Queues: nicQueues(n), QueueSize: queueSize, MTU: n.MTU}
}

func maxCPUs(spec hypervisor.VMSpec) int {
	return max(spec.MaxCPUs, spec.CPUs)
}

func layoutPath(runDir string) string { return filepath.Join(runDir, "layout.json") }

func writeLayout(runDir string, l layout) error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err == nil {
		err = store.WriteRuntimeFile(layoutPath(runDir), append(data, '\n'), 0o600)
	}
	if err != nil {
		return fmt.Errorf("record device layout in %s: %w", runDir, err)
	}
	return nil
}

func readLayout(runDir string) (layout, error) {
	var l layout
	data, err := os.ReadFile(layoutPath(runDir))
	if errors.Is(err, os.ErrNotExist) {
		return l, fmt.Errorf("no device layout recorded in %s (started by an older cocoon?): restart the VM to snapshot it", runDir)
	}
	if err == nil {
		err = json.Unmarshal(data, &l)
	}
	if err != nil {
		return l, fmt.Errorf("read device layout of the running VM (%s): %w", layoutPath(runDir), err)
	}
	return l, nil
}
