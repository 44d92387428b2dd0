package cloudinit

import (
	"fmt"
	"time"

	"github.com/cocoonstack/cocoon/internal/store"
)

// WriteImage renders s and writes it as a NoCloud seed volume (FAT12, label CIDATA) at path,
// atomically and with mode 0600.
func WriteImage(path string, s Seed) error {
	meta, user, network, err := Render(s)
	if err != nil {
		return fmt.Errorf("cloud-init seed for %s: %w", s.Hostname, err)
	}
	img, err := buildFAT12("CIDATA", []fatFile{
		{"meta-data", meta},
		{"user-data", user},
		{"network-config", network},
	}, time.Now())
	if err != nil {
		return fmt.Errorf("cloud-init seed for %s: %w", s.Hostname, err)
	}
	if err := store.WriteFileAtomic(path, img, 0o600); err != nil {
		return fmt.Errorf("write cloud-init seed: %w", err)
	}
	return nil
}
