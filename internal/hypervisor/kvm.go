package hypervisor

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	kvmDevice        = "/dev/kvm"
	pvmModule        = "/sys/module/kvm_pvm"
	kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	kvmAPIVersion    = 12
)

// KVMUnusable says why KVM cannot run stock guests here, or "" when it can. Backends that
// need KVM are not picked by `--hypervisor auto` then; doctor reports it.
func KVMUnusable() string {
	// On a PVM host /dev/kvm may open fine, but stock guest kernels hang under it.
	if _, err := os.Stat(pvmModule); err == nil {
		return "the host's KVM is PVM (kvm_pvm loaded), which stock guest kernels do not boot under"
	}
	f, err := os.OpenFile(kvmDevice, os.O_RDWR, 0)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	v, err := unix.IoctlRetInt(int(f.Fd()), kvmGetAPIVersion)
	if err != nil {
		return fmt.Sprintf("%s: KVM_GET_API_VERSION: %v", kvmDevice, err)
	}
	if v != kvmAPIVersion {
		return fmt.Sprintf("%s speaks KVM API %d, not %d", kvmDevice, v, kvmAPIVersion)
	}
	return ""
}
