package doctor

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
)

// checkPlatforms reports the host's architecture and how guests of each platform run: with
// KVM when native and KVM is usable, emulated under TCG otherwise, not at all without QEMU.
func checkPlatforms(_ context.Context, o *Options) Result {
	kvmWhy := o.KVMProblem()
	parts := []string{"host linux/" + runtime.GOARCH}
	var missing []string
	for _, arch := range []string{"amd64", "arm64"} {
		bin := map[string]string{"amd64": o.QEMUBinary, "arm64": "qemu-system-aarch64"}[arch]
		how := "TCG (emulated, slow)"
		switch {
		case lookPath(bin) != nil:
			how = "cannot run (" + bin + " not found)"
			missing = append(missing, map[string]string{"amd64": "qemu-system-x86", "arm64": "qemu-system-arm qemu-efi-aarch64"}[arch])
		case arch == runtime.GOARCH && kvmWhy == "":
			how = "KVM"
		case arch == runtime.GOARCH:
			how = "TCG (KVM unusable)"
		}
		parts = append(parts, fmt.Sprintf("linux/%s guests: %s", arch, how))
	}
	r := Result{Status: Pass, Detail: strings.Join(parts, "; ")}
	if len(missing) > 0 {
		r.Status, r.Hint = Warn, "apt-get install "+strings.Join(missing, " ")
	}
	return r
}

func lookPath(bin string) error {
	_, err := exec.LookPath(bin)
	return err
}
