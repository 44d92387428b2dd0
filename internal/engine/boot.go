package engine

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/network"
	"github.com/cocoonstack/cocoon/internal/platform"
	"github.com/cocoonstack/cocoon/internal/snapshot"
)

// caps are the capabilities of the VM's backend (zero when the backend is not in this build;
// such a VM is refused by backendOf before anything launches).
func (e *Engine) caps(vm *VM) hypervisor.Capabilities {
	if b, ok := e.backends[vm.Hypervisor]; ok {
		return b.Capabilities()
	}
	return hypervisor.Capabilities{}
}

// firmware is the UEFI code and variables template the VM's backend boots guests of plat
// with; vars is "" when the firmware has no variables file.
func (e *Engine) firmware(vm *VM, plat string) (code, vars string) {
	if fl, ok := e.backends[vm.Hypervisor].(hypervisor.FirmwareLocator); ok {
		return fl.Firmware(platform.Arch(platform.Or(plat)))
	}
	return "", ""
}

// uefiBoot is a VM's UEFI boot configuration: the backend's firmware, and a per-VM copy of
// its variables at dir/OVMF_VARS.fd when the firmware has them.
func (e *Engine) uefiBoot(vm *VM, dir string) *BootConfig {
	code, vars := e.firmware(vm, vm.Config.Platform)
	boot := &BootConfig{FirmwarePath: code}
	if vars != "" && e.caps(vm).FirmwareVars {
		boot.FirmwareVars = filepath.Join(dir, snapshot.FileFirmware)
	}
	return boot
}

// consoleDevice is the guest's console for the kernel command line: the backend's own
// (Cloud Hypervisor's virtio console), else the platform's first serial port.
func consoleDevice(plat string, caps hypervisor.Capabilities) string {
	switch {
	case caps.Console != "":
		return caps.Console
	case plat == platform.ARM64:
		return "ttyAMA0" // the virt machine's PL011 UART
	}
	return "ttyS0"
}

// kernelCmdline renders the guest contract (DESIGN.md §4): layers top→bottom, the COW disk,
// the hostname and one ip= per NIC with a static address. Disks are named by serial, or by
// position (/dev/vda, …) where the backend gives the guest no serials.
func kernelCmdline(vm *VM, caps hypervisor.Capabilities, layersTopDown []string, dns []string) string {
	name := func(serial string) string {
		if !caps.DisksByPath {
			return serial
		}
		return devicePath(slices.IndexFunc(vm.Disks, func(d hypervisor.Disk) bool { return d.Serial == serial }))
	}
	layers := make([]string, len(layersTopDown))
	for i, s := range layersTopDown {
		layers[i] = name(s)
	}
	parts := []string{"console=" + consoleDevice(vm.Config.Platform, caps), "loglevel=3", "boot=cocoon-overlay",
		"cocoon.layers=" + strings.Join(layers, ","), "cocoon.cow=" + name("cocoon-cow"), "rw",
		"net.ifnames=0", "cocoon.hostname=" + vm.Name,
		// Memory hot-added on clone or restore is usable at once, without a guest agent.
		"memhp_default_state=online",
		// Under loaded TCG the IO-APIC timer check can miss its window and panic the boot.
		"no_timer_check"}
	parts = append(parts, caps.KernelArgs...)
	return strings.Join(append(parts, network.KernelIPArgs(vm.Networks, vm.Name, dns)...), " ")
}

// devicePath is the guest device of the i-th virtio-blk disk: vda … vdz, vdaa, vdab, …
func devicePath(i int) string {
	name := ""
	for i++; i > 0; i = (i - 1) / 26 {
		name = string(rune('a'+(i-1)%26)) + name
	}
	return "/dev/vd" + name
}

// nicQueues is how many queue pairs each NIC of a VM with cpus vCPUs gets: one per vCPU where
// the backend does multi-queue virtio-net, else one.
func nicQueues(caps hypervisor.Capabilities, cpus int) int {
	if !caps.MultiQueue {
		return 1
	}
	return cpus
}
