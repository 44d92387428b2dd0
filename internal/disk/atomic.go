package disk

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// createAtomic builds path through a temp file in the same directory that fill writes (directly or
// by handing its name to a tool), then fsyncs and renames it into place, so a failure at any step
// leaves nothing behind and readers never see a half-made disk.
func createAtomic(path string, perm os.FileMode, fill func(tmp *os.File) error) error {
	return createFile(path, perm, true, fill)
}

// createFile is createAtomic; with durable false it skips the fsyncs (see CloneFileUnsynced).
func createFile(path string, perm os.FileMode, durable bool, fill func(tmp *os.File) error) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("create temp file for %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()           //nolint:errcheck
			os.Remove(tmp.Name()) //nolint:errcheck
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := fill(tmp); err != nil {
		return err
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	done = true
	if !durable {
		return nil
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	// Some filesystems refuse fsync on directories; the rename is still atomic there.
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOTSUP) {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

// run executes a disk tool and folds its output into the error, since that is where the reason is.
func run(tool string, args ...string) ([]byte, error) {
	bin, err := exec.LookPath(tool)
	if err != nil {
		return nil, fmt.Errorf("%s not found in PATH: install %s", tool, packageOf[tool])
	}
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// packageOf names the Debian package that provides each tool, for the "not found" hint.
var packageOf = map[string]string{
	"mkfs.ext4": "e2fsprogs",
	"qemu-img":  "qemu-utils",
}
