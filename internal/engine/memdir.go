package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// ensurePrivateDir makes dir (0700) or accepts an existing one only when it is a real
// directory, not a symlink, owned by this user and writable by no one else. Guest RAM files
// live there (by default under the world-writable /dev/shm): whoever can write the directory,
// or planted it, could swap or read a VM's memory.
func ensurePrivateDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(dir), 0o755); err == nil {
			err = os.Mkdir(dir, 0o700)
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("memory dir %s: %w (choose another memory_dir or run as root)", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("memory dir %s: %w", dir, err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("memory dir %s is a symlink: refusing to keep guest RAM there (set memory_dir to a real directory)", dir)
	case !fi.IsDir():
		return fmt.Errorf("memory dir %s is not a directory: remove it or set another memory_dir", dir)
	case st == nil || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("memory dir %s is owned by another user: refusing to keep guest RAM there (remove it or set another memory_dir)", dir)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("memory dir %s is writable by others (mode %04o): refusing to keep guest RAM there (chmod 700 it or set another memory_dir)", dir, fi.Mode().Perm())
	}
	return nil
}

// makeMemoryDir creates a VM's RAM directory, marked as this root's, inside a checked
// private parent. A directory on hugetlbfs gets no marker: its files can only be mapped, not
// written; gc never looks there, and rm removes it by the VM's ID (hugePageRoot).
func (e *Engine) makeMemoryDir(dir string) error {
	if err := ensurePrivateDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := ensurePrivateDir(dir); err != nil {
		return err
	}
	if onHugetlbfs(dir) {
		return nil
	}
	return e.markOwned(dir)
}

func onHugetlbfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.HUGETLBFS_MAGIC
}
