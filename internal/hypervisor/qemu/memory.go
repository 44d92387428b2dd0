package qemu

import (
	"fmt"
	"strconv"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Memory hot-add: a cold boot reserves memSlots pc-dimm slots and guest address space up to
// maxmem, so a clone or restore can grow by plugging one anonymous-RAM DIMM per growth. A DIMM
// is recorded in the layout (id, size, address, slot) so that a snapshot of the grown VM
// relaunches with the same DIMMs; its contents always travel in the state stream (it is not a
// shared file, so x-ignore-shared never skips it). Layouts without slots (VMs booted by an
// older cocoon) keep their plain -m and cannot grow.
const (
	memSlots = 8
	// memBlock is the guest's memory block size on x86-64 (128 MiB sections): a DIMM that is
	// not a multiple of it cannot be onlined.
	memBlock = 128 << 20
)

// dimm is one hot-added memory device.
type dimm struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
	Addr uint64 `json:"addr"`
	Slot int    `json:"slot"`
}

func memdevID(dimmID string) string { return "mem-" + dimmID }

// totalMemory is the guest's RAM: boot RAM plus hot-added DIMMs.
func (l layout) totalMemory() int64 {
	n := l.MemoryBytes
	for _, d := range l.DIMMs {
		n += d.Size
	}
	return n
}

// maxMemFor is the address space a cold boot of mem bytes reserves for growth: the host's RAM
// or twice mem, whichever is larger, in whole GiB. Reserving costs the host nothing.
func maxMemFor(mem int64) int64 {
	m := max(2*mem, hypervisor.HostMemTotal())
	return (m + 1<<30 - 1) &^ (1<<30 - 1)
}

// memoryArgs renders -m and the recorded DIMMs.
func (b *argBuilder) memoryArgs() {
	l := b.layout
	if l.MemSlots == 0 {
		b.add("-m", strconv.FormatInt(l.MemoryBytes>>20, 10)+"M")
		return
	}
	b.add("-m", fmt.Sprintf("size=%dM,slots=%d,maxmem=%dM", l.MemoryBytes>>20, l.MemSlots, l.MaxMemBytes>>20))
	for _, d := range l.DIMMs {
		b.add("-object", fmt.Sprintf("memory-backend-ram,id=%s,size=%d", memdevID(d.ID), d.Size),
			"-device", fmt.Sprintf("pc-dimm,id=%s,memdev=%s,addr=%#x,slot=%d", d.ID, memdevID(d.ID), d.Addr, d.Slot))
	}
}

// checkMemoryGrowth refuses growth the saved machine cannot take.
func checkMemoryGrowth(want int64, saved layout) error {
	have := saved.totalMemory()
	grow := want - have
	switch {
	case grow < 0:
		return fmt.Errorf("memory %d MiB is below the snapshot's %d MiB: memory cannot be removed", want>>20, have>>20)
	case grow == 0:
		return nil
	case saved.MemSlots == 0:
		return fmt.Errorf("memory %d MiB differs from the snapshot's %d MiB, and the snapshotted VM was booted without memory hot-plug slots (by an older cocoon): clone at its size, or restart that VM and snapshot it again",
			want>>20, have>>20)
	case len(saved.DIMMs) >= saved.MemSlots:
		return fmt.Errorf("memory can grow at most %d times along a chain of clones, and this snapshot's VM has used all slots: clone at %d MiB", saved.MemSlots, have>>20)
	case grow%memBlock != 0:
		return fmt.Errorf("memory must grow in steps of 128 MiB (the guest's memory block size): %d MiB is %d MiB more than the snapshot's %d MiB",
			want>>20, grow>>20, have>>20)
	case want > saved.MaxMemBytes:
		return fmt.Errorf("memory %d MiB is above %d MiB, the most the snapshotted VM was booted to take", want>>20, saved.MaxMemBytes>>20)
	}
	return nil
}

// memoryDevice is one entry of query-memory-devices (pc-dimm data).
type memoryDevice struct {
	Type string `json:"type"`
	Data struct {
		ID   string `json:"id"`
		Addr uint64 `json:"addr"`
		Slot int    `json:"slot"`
	} `json:"data"`
}

// addMemory plugs one DIMM holding the growth up to spec's memory and records where QEMU put it.
func (r *restorer) addMemory(c *qmpClient) error {
	grow := r.spec.MemoryBytes - r.layout.totalMemory()
	if grow <= 0 {
		return nil
	}
	d := dimm{ID: "dimm" + strconv.Itoa(len(r.layout.DIMMs)), Size: grow}
	obj := map[string]any{"qom-type": "memory-backend-ram", "id": memdevID(d.ID), "size": d.Size}
	if err := c.execute("object-add", obj, nil); err != nil {
		return fmt.Errorf("hot-add memory: %w", err)
	}
	if err := c.execute("device_add", map[string]any{"driver": "pc-dimm", "id": d.ID, "memdev": memdevID(d.ID)}, nil); err != nil {
		return fmt.Errorf("hot-add memory: %w", err)
	}
	var devs []memoryDevice
	if err := c.execute("query-memory-devices", nil, &devs); err != nil {
		return err
	}
	for _, m := range devs {
		if m.Type == "dimm" && m.Data.ID == d.ID {
			d.Addr, d.Slot = m.Data.Addr, m.Data.Slot
			r.layout.DIMMs = append(r.layout.DIMMs, d)
			return nil
		}
	}
	return fmt.Errorf("hot-added memory device %s not listed by QEMU", d.ID)
}
