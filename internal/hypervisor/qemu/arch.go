package qemu

import (
	"fmt"
	"runtime"
)

// archSpec is what differs between guest architectures; everything else in the argv is shared.
type archSpec struct {
	binary  string // default QEMU binary (amd64's can be overridden by qemu_binary)
	pkg     string // Debian package that ships it
	machine string // -machine, before memory-backend=
	tcgCPU  string // -cpu under TCG (KVM uses host)
	// hotCPU is the vCPU device type query-hotpluggable-cpus reports per accelerator; "" means
	// the machine cannot hot-add vCPUs, so its topology is sized for the boot vCPUs only.
	hotCPU map[string]string
	// kernelROM is the option ROM through which QEMU boots a bzImage given with -kernel (its
	// RAM block is in every snapshot); "" where the kernel is loaded without one.
	kernelROM string
}

// arches are the guest architectures, keyed by GOARCH name (the OCI platform's architecture).
var arches = map[string]archSpec{
	"amd64": {binary: "qemu-system-x86_64", pkg: "qemu-system-x86", machine: "q35", tcgCPU: "max",
		hotCPU: map[string]string{accelKVM: "host-x86_64-cpu", accelTCG: "max-x86_64-cpu"}, kernelROM: "linuxboot_dma.bin"},
	// virt with GICv3 and PCIe; QEMU 7.2 cannot hot-plug vCPUs on virt. cortex-a57 under TCG:
	// "max" emulates pointer authentication, which makes every function call slow.
	"arm64": {binary: "qemu-system-aarch64", pkg: "qemu-system-arm", machine: "virt,gic-version=3", tcgCPU: "cortex-a57",
		hotCPU: map[string]string{}},
}

// archOf returns the spec of a guest architecture; "" (records made before platforms) is amd64.
func archOf(arch string) (archSpec, error) {
	if arch == "" {
		arch = "amd64"
	}
	a, ok := arches[arch]
	if !ok {
		return archSpec{}, fmt.Errorf("guest architecture %q is not amd64 or arm64", arch)
	}
	return a, nil
}

// binaryFor is the QEMU binary that runs a guest of arch.
func (b *Backend) binaryFor(arch string) string {
	if arch == "" || arch == "amd64" {
		return b.binary
	}
	return arches[arch].binary
}

// native says whether a guest of arch runs on this host's CPU (so KVM can run it).
func native(arch string) bool {
	if arch == "" {
		arch = "amd64"
	}
	return arch == runtime.GOARCH
}
