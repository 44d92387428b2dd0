package engine

import (
	"fmt"

	"github.com/cocoonstack/cocoon/internal/hypervisor"

	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/platform"
)

// vmPlatform decides a new VM's platform: the one asked for (which the image must have), or
// the image's own. Cloud disks record no platform, so they run as asked (default: the host's).
func vmPlatform(want string, img *image.Image) (string, error) {
	if want == "" {
		return platform.Or(img.Platform), nil
	}
	p, err := platform.Parse(want)
	if err != nil {
		return "", err
	}
	if img.Platform != "" && img.Platform != p {
		return "", fmt.Errorf("image %s is %s, not %s: pull it with --platform %s", img.Ref, img.Platform, p, p)
	}
	return p, nil
}

// checkClonePlatform refuses a clone onto another platform than its snapshot's: the saved
// machine (CPU registers, interrupt controller) only loads into the same machine type.
func checkClonePlatform(want, snapName, snapPlatform string) error {
	if want == "" {
		return nil
	}
	p, err := platform.Parse(want)
	if err != nil {
		return err
	}
	if have := platform.Or(snapPlatform); have != p {
		return fmt.Errorf("snapshot %s is %s and clones only onto %s, not %s: drop --platform or use a %s snapshot", snapName, have, have, p, p)
	}
	return nil
}

// checkArch refuses a guest platform the backend cannot run on this host.
func checkArch(b hypervisor.Backend, plat string) error {
	if plat != platform.Host() && !b.Capabilities().CrossArch {
		return fmt.Errorf("hypervisor %s runs only %s guests on this host, not %s: use --hypervisor qemu (emulated) or a %s host", b.Name(), platform.Host(), plat, plat)
	}
	return nil
}
