package qemu

import (
	"fmt"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Disks beyond a snapshot's (a fresh cloud-init seed for a clone whose snapshot had none) are
// hot-plugged after the state is loaded, each into a spare PCIe root port taken from the top
// (NICs take them from the bottom). The port is recorded with the disk's queues, so a snapshot
// of that VM relaunches the disk on the same port.

// diskPorts counts the root ports disks hold.
func (l layout) diskPorts() int {
	n := 0
	for _, d := range l.Disks {
		if d.Bus != "" {
			n++
		}
	}
	return n
}

// checkAddedDevices refuses more NICs and disks than the saved machine has root ports for.
func checkAddedDevices(spec hypervisor.VMSpec, saved layout) error {
	added := len(spec.Disks) - len(saved.Disks)
	if added < 0 {
		return fmt.Errorf("%d disks, the snapshot has %d: disks cannot be removed", len(spec.Disks), len(saved.Disks))
	}
	if used := len(spec.NICs) + saved.diskPorts() + added; used > saved.rootPorts() {
		return fmt.Errorf("%d NICs and %d hot-plugged disks: the snapshotted VM was booted with %d PCIe root ports, so it takes at most %d of them together",
			len(spec.NICs), saved.diskPorts()+added, saved.rootPorts(), saved.rootPorts())
	}
	return nil
}

// addDisks plugs spec's disks beyond the loaded machine's.
func (r *restorer) addDisks(c *qmpClient) error {
	for i := len(r.layout.Disks); i < len(r.spec.Disks); i++ {
		d := r.spec.Disks[i]
		q := diskQueue{Queues: r.layout.BootCPUs, QueueSize: defaultDiskQueueSize,
			Bus: rootPort(r.layout.rootPorts() - 1 - r.layout.diskPorts())}
		if r.spec.DiskQueueSize != 0 {
			q.QueueSize = r.spec.DiskQueueSize
		}
		file := map[string]any{"driver": "file", "filename": d.Path, "aio": "threads"}
		if d.DirectIO {
			file["aio"] = "native"
		}
		node := map[string]any{"driver": string(d.Format), "node-name": driveID(i), "read-only": d.ReadOnly,
			"cache": map[string]any{"direct": d.DirectIO}, "file": file}
		if !d.ReadOnly {
			node["discard"] = "unmap"
		}
		if err := c.execute("blockdev-add", node, nil); err != nil {
			return fmt.Errorf("add %s disk: %w", d.Role, err)
		}
		props := []prop{{"drive", driveID(i)}, {"id", diskID(i)}, {"bus", q.Bus}}
		if d.Serial != "" {
			props = append(props, prop{"serial", d.Serial})
		}
		props = append(props, prop{"num-queues", q.Queues}, prop{"queue-size", q.QueueSize})
		if err := c.execute("device_add", propMap("virtio-blk-pci", props), nil); err != nil {
			return fmt.Errorf("add %s disk: %w", d.Role, err)
		}
		r.layout.Disks = append(r.layout.Disks, q)
	}
	return nil
}
