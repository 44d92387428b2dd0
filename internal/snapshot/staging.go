package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// StagingDir makes a fresh directory for a snapshot being written or imported and holds a
// lock on it until release is called: GC never removes a staging dir whose writer still runs,
// however long an import takes (the dir's mtime does not move while one big file is written).
func (s *Store) StagingDir(prefix string) (dir string, release func(), err error) {
	parent := filepath.Join(s.root, "staging")
	if err := os.MkdirAll(parent, 0o750); err != nil {
		return "", nil, err
	}
	if dir, err = os.MkdirTemp(parent, prefix+"-"); err != nil {
		return "", nil, err
	}
	f, err := lockDir(dir, 0)
	if err != nil {
		os.Remove(dir) //nolint:errcheck
		return "", nil, err
	}
	return dir, func() { f.Close() }, nil
}

// lockDir takes an exclusive flock on the directory itself; closing the file releases it.
func lockDir(dir string, flags int) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|flags); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock staging dir %s: %w", dir, err)
	}
	return f, nil
}

// removeUnheld removes a staging dir unless a writer still holds it.
func removeUnheld(dir string) (bool, error) {
	f, err := lockDir(dir, unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	if err := os.RemoveAll(dir); err != nil {
		return false, fmt.Errorf("remove %s: %w", dir, err)
	}
	return true, nil
}
