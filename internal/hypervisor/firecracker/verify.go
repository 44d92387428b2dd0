package firecracker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// vmConfig is the part of GET /vm/config (FullVmConfiguration) that names host resources.
type vmConfig struct {
	Drives []drive            `json:"drives"`
	NICs   []networkInterface `json:"network-interfaces"`
	Vsock  *vsock             `json:"vsock"`
	Pmem   []json.RawMessage  `json:"pmem"`
}

// verifyDevices checks, after a snapshot load and before the guest runs, that the devices FC
// restored are exactly spec's: its drives under their run-dir names with their read-only
// flags, its TAPs, its vsock socket, nothing else that opens host files. A snapshot state
// from elsewhere (an import) that names other host files is refused before the guest could
// touch them.
func verifyDevices(ctx context.Context, c *rest.Client, spec hypervisor.VMSpec) error {
	var got vmConfig
	if err := c.Do(ctx, rest.Call{Method: http.MethodGet, Path: "/vm/config", Out: &got}); err != nil {
		return err
	}
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("snapshot state does not match VM %s (%s): refusing to resume it", spec.ID, fmt.Sprintf(format, args...))
	}
	if len(got.Drives) != len(spec.Disks) {
		return refuse("%d drives, the VM has %d", len(got.Drives), len(spec.Disks))
	}
	for _, d := range got.Drives {
		i := indexOf(d.DriveID, len(spec.Disks), driveID)
		if i < 0 || d.PathOnHost != driveLink(i) || d.IsReadOnly != spec.Disks[i].ReadOnly {
			return refuse("drive %s at %q (read-only %v) is not one of the VM's", d.DriveID, d.PathOnHost, d.IsReadOnly)
		}
	}
	if len(got.NICs) != len(spec.NICs) {
		return refuse("%d network interfaces, the VM has %d", len(got.NICs), len(spec.NICs))
	}
	for _, n := range got.NICs {
		if i := indexOf(n.IfaceID, len(spec.NICs), ifaceID); i < 0 || n.HostDevName != spec.NICs[i].TapName {
			return refuse("interface %s on TAP %q is not one of the VM's", n.IfaceID, n.HostDevName)
		}
	}
	if got.Vsock != nil && got.Vsock.UDSPath != vsockName {
		return refuse("vsock socket %q, want %q in the run dir", got.Vsock.UDSPath, vsockName)
	}
	if len(got.Pmem) > 0 {
		return refuse("%d pmem devices, the VM has none", len(got.Pmem))
	}
	return nil
}

// indexOf is the i < n with name(i) == id, or -1. (Counts match, so ids are then distinct.)
func indexOf(id string, n int, name func(int) string) int {
	for i := range n {
		if name(i) == id {
			return i
		}
	}
	return -1
}
