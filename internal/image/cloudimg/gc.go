package cloudimg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/lock"
)

// TempMaxAge is how old a temp file must be before GC deletes it.
const TempMaxAge = time.Hour

// TryLockGC takes, without waiting, the index lock and the activity lock (held by every running
// pull or import). It fails with lock.ErrBusy when either is held.
func (s *Store) TryLockGC() (release func(), err error) {
	locks := []*lock.Lock{s.index.Lock(), s.activity()}
	for i, l := range locks {
		if err := l.TryLock(); err != nil {
			for _, h := range locks[:i] {
				h.Unlock() //nolint:errcheck
			}
			return nil, fmt.Errorf("cloud images: %w", err)
		}
	}
	return func() {
		for _, l := range locks {
			l.Unlock() //nolint:errcheck
		}
	}, nil
}

// Collect removes blobs that no index entry references and pinned does not name, and temp files
// older than TempMaxAge. Call it only while holding TryLockGC.
func (s *Store) Collect(pinned map[string]struct{}, now time.Time) ([]string, error) {
	idx, err := s.index.ReadUnlocked()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for id := range pinned {
		keep[id] = true
	}
	for _, e := range idx.Images {
		for _, id := range e.BlobIDs() {
			keep[id] = true
		}
	}
	var removed []string
	var errs []error
	drop := func(p string) {
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			return
		}
		removed = append(removed, p)
	}
	blobDir := filepath.Join(s.cfg.Dir, "blobs")
	blobs, err := readDir(blobDir)
	errs = append(errs, err)
	for _, d := range blobs {
		if id, ok := strings.CutSuffix(d.Name(), ".qcow2"); ok && !keep[id] {
			drop(filepath.Join(blobDir, d.Name()))
		}
	}
	temps, err := readDir(s.tempDir())
	errs = append(errs, err)
	for _, d := range temps {
		if info, err := d.Info(); err == nil && now.Sub(info.ModTime()) > TempMaxAge {
			drop(filepath.Join(s.tempDir(), d.Name()))
		}
	}
	return removed, errors.Join(errs...)
}

func readDir(dir string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}
