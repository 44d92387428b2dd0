package qemu

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

// Accelerators.
const (
	accelAuto = "auto"
	accelKVM  = "kvm"
	accelTCG  = "tcg"
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
		if reason := hypervisor.KVMUnusable(); reason != "" {
			tcgFallbackWarning.Do(func() {
				slog.Warn(fmt.Sprintf("KVM unusable (%s), falling back to TCG (slow)", reason))
			})
			return accelTCG, nil
		}
		return accelKVM, nil
	case accelKVM:
		if reason := hypervisor.KVMUnusable(); reason != "" {
			return "", fmt.Errorf("accel kvm: KVM is unusable on this host (%s): use --accel tcg or auto", reason)
		}
		return accelKVM, nil
	case accelTCG:
		return accelTCG, nil
	}
	return "", fmt.Errorf("unknown accel %q: use auto, kvm or tcg", want)
}
