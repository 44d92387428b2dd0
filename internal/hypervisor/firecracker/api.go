package firecracker

import (
	"fmt"
	"net/http"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// Request bodies, as firecracker-swagger.yaml defines them.
type (
	machineConfig struct {
		VCPUCount  int   `json:"vcpu_count"`
		MemSizeMiB int64 `json:"mem_size_mib"`
	}
	bootSource struct {
		KernelImagePath string `json:"kernel_image_path"`
		InitrdPath      string `json:"initrd_path,omitempty"`
		BootArgs        string `json:"boot_args,omitempty"`
	}
	drive struct {
		DriveID      string `json:"drive_id"`
		PathOnHost   string `json:"path_on_host"`
		IsRootDevice bool   `json:"is_root_device"`
		IsReadOnly   bool   `json:"is_read_only"`
		IOEngine     string `json:"io_engine,omitempty"`
	}
	networkInterface struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
		GuestMAC    string `json:"guest_mac,omitempty"`
	}
	balloon struct {
		AmountMiB         int64 `json:"amount_mib"`
		DeflateOnOOM      bool  `json:"deflate_on_oom"`
		FreePageReporting bool  `json:"free_page_reporting"`
	}
	vsock struct {
		GuestCID int    `json:"guest_cid"`
		UDSPath  string `json:"uds_path"`
	}
	action struct {
		ActionType string `json:"action_type"`
	}
	vmState struct {
		State string `json:"state"`
	}
	snapshotCreate struct {
		SnapshotPath string `json:"snapshot_path"`
		MemFilePath  string `json:"mem_file_path"`
		SnapshotType string `json:"snapshot_type"`
	}
	memBackend struct {
		BackendType string `json:"backend_type"`
		BackendPath string `json:"backend_path"`
	}
	networkOverride struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
	}
	snapshotLoad struct {
		SnapshotPath     string            `json:"snapshot_path"`
		MemBackend       memBackend        `json:"mem_backend"`
		NetworkOverrides []networkOverride `json:"network_overrides,omitempty"`
	}
	instanceInfo struct {
		State string `json:"state"` // "Not started", "Running", "Paused"
	}
)

// guestCID is the guest's vsock context id (the first one not reserved).
const guestCID = 3

// snapshotTimeout bounds snapshot create and load: they move all of guest memory.
const snapshotTimeout = 10 * time.Minute

func driveID(i int) string { return fmt.Sprintf("drive_%d", i) }
func ifaceID(i int) string { return fmt.Sprintf("eth%d", i) }

func put(path string, body any) rest.Call {
	return rest.Call{Method: http.MethodPut, Path: path, Body: body}
}

func setVMState(state string) rest.Call {
	return rest.Call{Method: http.MethodPatch, Path: "/vm", Body: vmState{State: state}}
}

// bootCalls configure a fresh Firecracker process for spec and start the guest (spec §10.1).
// inRunDir: FC runs in spec's run dir and is given the run-dir-relative names of drives and
// vsock socket (see drives.go); otherwise (a recipe for people) the absolute paths.
func bootCalls(spec hypervisor.VMSpec, inRunDir bool) []rest.Call {
	drivePath, vsockUDS := driveLink, vsockName
	if !inRunDir {
		drivePath = func(i int) string { return spec.Disks[i].Path }
		vsockUDS = vsockPath(spec.RunDir)
	}
	// spec.HugePages is not passed on: FC restores a hugetlbfs-backed snapshot only through a
	// UFFD handler (its File memory backend refuses it), so every FC guest runs on regular
	// pages and every snapshot can be cloned. FC's guest memory is its own anonymous mapping;
	// spec.MemoryDir is not used either.
	mc := machineConfig{VCPUCount: spec.CPUs, MemSizeMiB: spec.MemoryBytes >> 20}
	calls := []rest.Call{
		put("/machine-config", mc),
		put("/boot-source", bootSource{KernelImagePath: spec.Boot.Kernel, InitrdPath: spec.Boot.Initrd, BootArgs: spec.Boot.Cmdline}),
	}
	for i, d := range spec.Disks {
		dr := drive{DriveID: driveID(i), PathOnHost: drivePath(i), IsReadOnly: d.ReadOnly}
		if !d.ReadOnly {
			dr.IOEngine = "Async" // io_uring; read-only layers gain nothing from it
		}
		calls = append(calls, put("/drives/"+dr.DriveID, dr))
	}
	for i, n := range spec.NICs {
		calls = append(calls, put("/network-interfaces/"+ifaceID(i), networkInterface{IfaceID: ifaceID(i), HostDevName: n.TapName, GuestMAC: n.MAC}))
	}
	if spec.Balloon && spec.MemoryBytes >= minBalloonMemory {
		// A quarter of guest RAM starts inflated; the guest takes it back when it runs short.
		calls = append(calls, put("/balloon", balloon{AmountMiB: spec.MemoryBytes >> 20 / 4, DeflateOnOOM: true, FreePageReporting: true}))
	}
	calls = append(calls, put("/entropy", struct{}{}))
	if spec.Agent {
		calls = append(calls, put("/vsock", vsock{GuestCID: guestCID, UDSPath: vsockUDS}))
	}
	return append(calls, put("/actions", action{ActionType: "InstanceStart"}))
}

// loadCall loads snapshot dir as spec's VM, paused, with the clone's TAPs (network_overrides).
// Drives and the vsock socket need no override: their run-dir-relative names resolve in the
// clone's run dir (drives.go); verifyDevices then checks what FC loaded.
func loadCall(spec hypervisor.VMSpec, dir string) rest.Call {
	load := snapshotLoad{
		SnapshotPath: statePath(dir),
		// FC maps the memory file privately (MAP_PRIVATE): clones of one snapshot share its
		// pages and none ever writes to it.
		MemBackend: memBackend{BackendType: "File", BackendPath: memPath(dir)},
	}
	for i, n := range spec.NICs {
		load.NetworkOverrides = append(load.NetworkOverrides, networkOverride{IfaceID: ifaceID(i), HostDevName: n.TapName})
	}
	return rest.Call{Method: http.MethodPut, Path: "/snapshot/load", Body: load, Once: true, Timeout: snapshotTimeout}
}
