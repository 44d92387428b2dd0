// Package backends links every hypervisor backend into the binary: each registers itself
// with internal/hypervisor from its init, and importing this package is the one place that
// lists them.
package backends

import (
	_ "github.com/cocoonstack/cocoon/internal/hypervisor/cloudhv"     // Cloud Hypervisor (KVM)
	_ "github.com/cocoonstack/cocoon/internal/hypervisor/firecracker" // Firecracker, by name only (--fc)
	_ "github.com/cocoonstack/cocoon/internal/hypervisor/qemu"        // QEMU/KVM or TCG
)
