package cloudhv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// StartFromSnapshot implements hypervisor.Snapshotter (spec §9.8, §9.9). The snapshot's
// config.json and state.json are copied into spec.RunDir with every host path rewritten for
// spec, its memory-ranges is linked (never copied, never written: clones of one snapshot run
// side by side), and a cloud-hypervisor started with only --api-socket restores from the run
// dir. Then the snapshot's NICs make way for spec's (fresh MACs) when they differ, vCPUs and
// memory grow to spec by vm.resize, the console relay starts and the guest resumes.
func (b *Backend) StartFromSnapshot(ctx context.Context, spec hypervisor.VMSpec, src hypervisor.SnapshotSource) (hypervisor.Process, error) {
	if err := b.validate(spec, false); err != nil {
		return hypervisor.Process{}, err
	}
	snap, err := loadSnapshot(src)
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("VM %s: %w", spec.ID, err)
	}
	if err := checkGrowth(spec, snap.config); err != nil {
		return hypervisor.Process{}, err
	}
	oldNICs, savedDisks := snap.config.list("net"), len(snap.config.list("disks"))
	moved, err := snap.config.rewrite(spec)
	if err == nil {
		err = pathsOK(map[string]any(snap.config), "config.json", allowedPaths(spec))
	}
	if err != nil {
		return hypervisor.Process{}, fmt.Errorf("VM %s: snapshot %s: %w", spec.ID, src.Dir, err)
	}
	patchState(snap.state, moved)

	p := b.plan(spec.RunDir, spec.LogDir)
	p.VMID, p.Args = spec.ID, []string{"--api-socket", apiPath(spec.RunDir)}
	if len(spec.NICs) > 0 {
		// NICs are opened by name (restore and vm.add-net cannot take fds here): CH runs in
		// the netns that holds the TAPs.
		p.Netns = spec.NICs[0].Netns
	}
	p.Prepare = func() error {
		if err := writeJSON(filepath.Join(spec.RunDir, configFile), snap.config); err != nil {
			return err
		}
		if err := writeJSON(filepath.Join(spec.RunDir, stateFile), snap.state); err != nil {
			return err
		}
		return os.Symlink(filepath.Join(src.Dir, memoryFile), filepath.Join(spec.RunDir, memoryFile))
	}
	ctx, cancel := context.WithTimeout(ctx, b.restoreWait)
	defer cancel()
	a := newAPI(spec.RunDir)
	proc, err := hypervisor.Run(ctx, p, a.ready, func(ctx context.Context) error {
		restore := map[string]any{"source_url": "file://" + spec.RunDir}
		if src.OnDemand {
			restore["memory_restore_mode"] = "OnDemand"
		}
		if err := a.once(ctx, "/vm.restore", restore); err != nil {
			return err
		}
		if err := swapNICs(ctx, a, oldNICs, spec.NICs); err != nil {
			return err
		}
		if err := addDisks(ctx, a, spec, savedDisks); err != nil {
			return err
		}
		if err := grow(ctx, a, spec, src); err != nil {
			return err
		}
		if err := startConsole(ctx, a, spec); err != nil {
			return err
		}
		return a.put(ctx, "/vm.resume", nil)
	})
	if err != nil {
		return proc, fmt.Errorf("restore %w", err)
	}
	return proc, nil
}

// swapNICs gives the restored guest spec's NICs. When they are the snapshot's (same MACs, a
// restore of the same VM) nothing changes; otherwise every saved NIC is removed and every new
// one added, so a clone never shares a MAC with its source and may have more NICs.
func swapNICs(ctx context.Context, a api, old []map[string]any, nics []hypervisor.NIC) error {
	same := len(old) == len(nics)
	for i := 0; same && i < len(old); i++ {
		same = strings.EqualFold(str(old[i], "mac"), nics[i].MAC)
	}
	if same {
		return nil
	}
	for _, n := range old {
		if err := a.put(ctx, "/vm.remove-device", map[string]string{"id": str(n, "id")}); err != nil {
			return err
		}
	}
	for _, n := range nics {
		if err := a.put(ctx, "/vm.add-net", netConfig(n)); err != nil {
			return err
		}
	}
	return nil
}

// addDisks hot-adds spec's disks beyond the snapshot's (a fresh cloud-init seed for a clone
// whose snapshot had none), with the queues a cold boot would give them.
func addDisks(ctx context.Context, a api, spec hypervisor.VMSpec, saved int) error {
	for _, d := range spec.Disks[saved:] {
		if err := a.put(ctx, "/vm.add-disk", diskConfig(d, spec)); err != nil {
			return fmt.Errorf("add %s disk: %w", d.Role, err)
		}
	}
	return nil
}

// grow hot-adds vCPUs (up to max_vcpus) and memory (ACPI, into the cold boot's hotplug_size).
func grow(ctx context.Context, a api, spec hypervisor.VMSpec, src hypervisor.SnapshotSource) error {
	resize := map[string]any{}
	if spec.CPUs > src.CPUs {
		resize["desired_vcpus"] = spec.CPUs
	}
	if spec.MemoryBytes > src.MemoryBytes {
		resize["desired_ram"] = spec.MemoryBytes
	}
	if len(resize) == 0 {
		return nil
	}
	return a.put(ctx, "/vm.resize", resize)
}

// checkGrowth refuses what vm.resize cannot do for the saved VM: shrinking, vCPUs beyond
// max_vcpus, memory beyond the reserved hotplug space or not in whole 128 MiB blocks.
func checkGrowth(spec hypervisor.VMSpec, c snapConfig) error {
	cpus, mem := c.obj("cpus"), c.obj("memory")
	have, maxv := num(cpus, "boot_vcpus"), num(cpus, "max_vcpus")
	limit := num(mem, "size") + num(mem, "hotplug_size")
	switch {
	case int64(spec.CPUs) < have:
		return fmt.Errorf("VM %s: %d vCPUs is fewer than the snapshot's %d: vCPUs can only grow", spec.ID, spec.CPUs, have)
	case int64(spec.CPUs) > maxv:
		return fmt.Errorf("VM %s: %d vCPUs is more than the snapshot's maximum of %d", spec.ID, spec.CPUs, maxv)
	case spec.MemoryBytes < c.memory():
		return fmt.Errorf("VM %s: memory %d MiB is less than the snapshot's %d MiB: memory can only grow", spec.ID, spec.MemoryBytes>>20, c.memory()>>20)
	case spec.MemoryBytes > c.memory() && (spec.MemoryBytes-c.memory())%memBlock != 0:
		return fmt.Errorf("VM %s: memory can only grow by whole 128 MiB blocks on cloud-hypervisor (%d MiB → %d MiB)", spec.ID, c.memory()>>20, spec.MemoryBytes>>20)
	case spec.MemoryBytes > limit:
		return fmt.Errorf("VM %s: memory %d MiB is more than the snapshot VM can grow to (%d MiB)", spec.ID, spec.MemoryBytes>>20, limit>>20)
	}
	return nil
}

// writeJSON writes v to path (0600, created fresh: a planted file or link is refused).
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = f.Write(data); err == nil {
		err = f.Close()
	} else {
		f.Close()
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
