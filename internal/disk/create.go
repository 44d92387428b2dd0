package disk

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	units "github.com/docker/go-units"
)

// CreateRaw creates a sparse raw file of size bytes with no filesystem (data disks with
// fstype=none, which the guest formats itself). Mode 0600.
func CreateRaw(path string, size int64) error {
	if size <= 0 {
		return fmt.Errorf("create raw disk %s: size must be positive, got %d", path, size)
	}
	err := createAtomic(path, 0o600, func(tmp *os.File) error { return tmp.Truncate(size) })
	if err != nil {
		return fmt.Errorf("create raw disk %s: %w", path, err)
	}
	return nil
}

// CreateRawExt4 creates a sparse raw file of size bytes holding an empty ext4 filesystem (OCI COW
// disks, where the guest makes upper/ and work/ itself, and data disks). Mode 0600.
func CreateRawExt4(path string, size int64, label string) error {
	if size <= 0 {
		return fmt.Errorf("create ext4 disk %s: size must be positive, got %d", path, size)
	}
	if len(label) > 16 {
		return fmt.Errorf("create ext4 disk %s: label %q is longer than ext4's 16 bytes", path, label)
	}
	err := createAtomic(path, 0o600, func(tmp *os.File) error {
		if err := tmp.Truncate(size); err != nil {
			return fmt.Errorf("truncate to %d bytes: %w", size, err)
		}
		// Lazy init and no discard keep mkfs fast and the file sparse; -m 0 because no root daemon
		// in the guest needs reserved blocks on a scratch disk.
		args := []string{"-F", "-q", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"}
		if label != "" {
			args = append(args, "-L", label)
		}
		_, err := run("mkfs.ext4", append(args, tmp.Name())...)
		return err
	})
	if err != nil {
		return fmt.Errorf("create ext4 disk %s: %w", path, err)
	}
	return nil
}

// CreateQcow2Overlay creates a qcow2 overlay of size bytes on top of the qcow2 image backing. The
// backing path is recorded as absolute, so the overlay stays valid whatever the working directory.
func CreateQcow2Overlay(path, backing string, size int64) error {
	abs, err := filepath.Abs(backing)
	if err != nil {
		return fmt.Errorf("create overlay %s: %w", path, err)
	}
	base, err := Info(abs, "qcow2")
	if err != nil {
		return fmt.Errorf("create overlay %s: backing must be qcow2: %w", path, err)
	}
	if size < base.VirtualSize {
		return fmt.Errorf("create overlay %s: size %d bytes (%s) is smaller than backing %s (%d bytes, %s): ask for at least its size",
			path, size, units.BytesSize(float64(size)), abs, base.VirtualSize, units.BytesSize(float64(base.VirtualSize)))
	}
	err = createAtomic(path, 0o600, func(tmp *os.File) error {
		argv := Qcow2OverlayArgv(abs, tmp.Name(), size)
		_, err := run(argv[0], argv[1:]...)
		return err
	})
	if err != nil {
		return fmt.Errorf("create overlay %s: %w", path, err)
	}
	return nil
}

// Qcow2OverlayArgv is the command that makes a qcow2 overlay of size bytes at path on the
// qcow2 backing file (vm debug prints it).
func Qcow2OverlayArgv(backing, path string, size int64) []string {
	return []string{"qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, path, strconv.FormatInt(size, 10)}
}

// RebaseQcow2 points the qcow2 overlay at path to a new backing file without touching its
// data (qemu-img rebase -u): the same base image at another path, as after a clone or import.
func RebaseQcow2(path, backing string) error {
	if _, err := run("qemu-img", "rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b", backing, path); err != nil {
		return fmt.Errorf("rebase %s onto %s: %w", path, backing, err)
	}
	return nil
}

// ImageInfo is what qemu-img reports about a disk image.
type ImageInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
	ActualSize  int64  `json:"actual-size"`
	BackingFile string `json:"backing-filename"`
}

// Info asks qemu-img about path read as format ("raw" or "qcow2"). The format is always named:
// a guest can write anything into a raw disk, including a qcow2 header pointing at host files,
// and qemu-img must never probe such content. --force-share lets it read disks of running VMs.
func Info(path, format string) (ImageInfo, error) {
	if format != "raw" && format != "qcow2" {
		return ImageInfo{}, fmt.Errorf("inspect %s: unsupported format %q (raw or qcow2)", path, format)
	}
	out, err := run("qemu-img", "info", "--force-share", "-f", format, "--output=json", path)
	if err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	var info ImageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return ImageInfo{}, fmt.Errorf("inspect %s: decode qemu-img output: %w", path, err)
	}
	return info, nil
}

// Resize grows the disk container at path to size bytes (format "raw" or "qcow2"). Shrinking is
// refused because it would cut off guest data; the guest filesystem itself is not grown.
func Resize(path, format string, size int64) error {
	if format != "raw" && format != "qcow2" {
		return fmt.Errorf("resize %s: unsupported format %q (raw or qcow2)", path, format)
	}
	info, err := Info(path, format)
	if err != nil {
		return fmt.Errorf("resize %s: %w", path, err)
	}
	switch {
	case size < info.VirtualSize:
		return fmt.Errorf("resize %s: refusing to shrink from %d to %d bytes: disks only grow, ask for at least %s",
			path, info.VirtualSize, size, units.BytesSize(float64(info.VirtualSize)))
	case size == info.VirtualSize:
		return nil
	case format == "raw":
		if err := os.Truncate(path, size); err != nil {
			return fmt.Errorf("resize %s: %w", path, err)
		}
		return nil
	default:
		if _, err := run("qemu-img", "resize", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10)); err != nil {
			return fmt.Errorf("resize %s: %w", path, err)
		}
		return nil
	}
}
