package qemu

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// Accelerators.
const (
	accelAuto = "auto"
	accelKVM  = "kvm"
	accelTCG  = "tcg"
)

const (
	kvmDevice        = "/dev/kvm"
	pvmModule        = "/sys/module/kvm_pvm"
	kvmGetAPIVersion = 0xAE00 // _IO(KVMIO, 0x00)
	kvmAPIVersion    = 12
)

var tcgFallbackWarning, foreignWarning sync.Once

// resolveAccel turns auto|kvm|tcg into the accelerator QEMU will use for a guest of arch: a
// guest of another architecture than the host's can only be emulated.
func resolveAccel(want, arch string) (string, error) {
	if _, err := archOf(arch); err != nil {
		return "", err
	}
	if !native(arch) {
		switch want {
		case "", accelAuto, accelTCG:
			foreignWarning.Do(func() {
				slog.Warn(fmt.Sprintf("linux/%s guest on a linux/%s host: emulated under TCG (slow)", arch, runtime.GOARCH))
			})
			return accelTCG, nil
		case accelKVM:
			return "", fmt.Errorf("accel kvm: a linux/%s guest cannot run under KVM on this linux/%s host: use --accel tcg or auto", arch, runtime.GOARCH)
		}
	}
	switch want {
	case "", accelAuto:
		if reason := KVMUnusable(); reason != "" {
			tcgFallbackWarning.Do(func() {
				slog.Warn(fmt.Sprintf("KVM unusable (%s), falling back to TCG (slow)", reason))
			})
			return accelTCG, nil
		}
		return accelKVM, nil
	case accelKVM:
		if reason := KVMUnusable(); reason != "" {
			return "", fmt.Errorf("accel kvm: KVM is unusable on this host (%s): use --accel tcg or auto", reason)
		}
		return accelKVM, nil
	case accelTCG:
		return accelTCG, nil
	}
	return "", fmt.Errorf("unknown accel %q: use auto, kvm or tcg", want)
}

// KVMUnusable says why KVM cannot run stock guests here, or "" when it can (doctor reports it).
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
