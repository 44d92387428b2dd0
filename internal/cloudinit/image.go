package cloudinit

import (
	"fmt"
	"os"
	"time"

	"github.com/cocoonstack/cocoon/internal/store"
)

// WriteImage renders s and writes it as a NoCloud seed volume (FAT12, label CIDATA) at path,
// atomically and with mode 0600.
func WriteImage(path string, s Seed) error {
	img, err := seedImage(s)
	if err != nil {
		return err
	}
	if err := store.WriteFileAtomic(path, img, 0o600); err != nil {
		return fmt.Errorf("write cloud-init seed: %w", err)
	}
	return nil
}

// RewriteImage writes the seed for s over the existing seed volume at path, in place: a
// hypervisor that has the volume open sees the new seed (a rename would leave it the old
// inode). The volume's size never changes (ImageSize).
func RewriteImage(path string, s Seed) error {
	img, err := seedImage(s)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("rewrite cloud-init seed: %w", err)
	}
	_, err = f.WriteAt(img, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("rewrite cloud-init seed: %w", err)
	}
	return nil
}

func seedImage(s Seed) ([]byte, error) {
	meta, user, network, err := Render(s)
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed for %s: %w", s.Hostname, err)
	}
	img, err := buildFAT12("CIDATA", []fatFile{
		{"meta-data", meta},
		{"user-data", user},
		{"network-config", network},
	}, time.Now())
	if err != nil {
		return nil, fmt.Errorf("cloud-init seed for %s: %w", s.Hostname, err)
	}
	return img, nil
}
