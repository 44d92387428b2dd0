// Package blobstore is the part of an image store that does not depend on the kind of image
// (OCI or cloud): an index of entries that name the blobs they need, content-addressed blobs,
// work files, and the locks that let GC run without waiting and without deleting a blob that a
// pull has made but not yet recorded.
//
// Layout under Dir:
//
//	db/images.json, db/images.lock   the index
//	blobs/<id><BlobExt>              one file per blob, shared by all images
//	<KeyedDir>/<id>                  per-blob extras (OCI boot files), collected with the blob
//	temp/                            work files and dirs of pulls and imports
//	locks/activity.lock              shared by every pull/import, exclusive for GC
package blobstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/lock"
	"github.com/cocoonstack/cocoon/internal/store"
)

// TempMaxAge is how old a work file or dir must be before GC deletes it.
const TempMaxAge = time.Hour

// Index is the index file: entries keyed by ref (image reference, URL or import name).
type Index[E any] struct {
	store.Header
	Images map[string]*E `json:"images"`
}

// Init allocates the map of a new or empty index.
func (i *Index[E]) Init() {
	if i.Images == nil {
		i.Images = map[string]*E{}
	}
}

// Config describes one kind of image store.
type Config struct {
	Dir       string   // <root>/<kind>
	Kind      string   // names the store in errors: "oci images"
	BlobExt   string   // blobs are blobs/<id><BlobExt>
	KeyedDirs []string // dirs under Dir whose entries are named by blob id
	Schema    int      // index schema version
}

// Store holds entries of type E; P (*E) names the blob IDs an entry needs.
type Store[E any, P interface {
	*E
	BlobIDs() []string
}] struct {
	cfg   Config
	Index *store.Store[Index[E], *Index[E]]
}

// New returns the store kept under cfg.Dir; nothing is created until first use.
func New[E any, P interface {
	*E
	BlobIDs() []string
}](cfg Config) *Store[E, P] {
	return &Store[E, P]{cfg: cfg, Index: store.New[Index[E]](filepath.Join(cfg.Dir, "db"), "images", cfg.Schema)}
}

// BlobPath is the blob named by id.
func (s *Store[E, P]) BlobPath(id string) string {
	return filepath.Join(s.cfg.Dir, "blobs", id+s.cfg.BlobExt)
}

// TempDir holds the work files and dirs of pulls and imports.
func (s *Store[E, P]) TempDir() string { return filepath.Join(s.cfg.Dir, "temp") }

// Activity is held shared by every pull and import and exclusively by GC, so GC never deletes a
// blob that a pull has made but not yet recorded.
func (s *Store[E, P]) Activity() *lock.Lock {
	return lock.New(filepath.Join(s.cfg.Dir, "locks", "activity.lock"))
}

// Entries returns a copy of the index.
func (s *Store[E, P]) Entries(ctx context.Context) (map[string]E, error) {
	out := map[string]E{}
	err := s.Index.Read(ctx, func(idx *Index[E]) error {
		for k, e := range idx.Images {
			out[k] = *e
		}
		return nil
	})
	return out, err
}

// Lookup returns a copy of the entry key, or nil when the index has none.
func (s *Store[E, P]) Lookup(ctx context.Context, key string) (*E, error) {
	var found *E
	err := s.Index.Read(ctx, func(idx *Index[E]) error {
		if e, ok := idx.Images[key]; ok {
			c := *e
			found = &c
		}
		return nil
	})
	return found, err
}

// Remove drops the index entries keys; blobs stay until GC finds them unreferenced.
func (s *Store[E, P]) Remove(ctx context.Context, keys []string) error {
	return s.Index.Update(ctx, func(idx *Index[E]) error {
		for _, k := range keys {
			delete(idx.Images, k)
		}
		return nil
	})
}

// TryLockGC takes, without waiting, the index lock and the activity lock (held by every running
// pull or import). It fails with lock.ErrBusy when either is held.
func (s *Store[E, P]) TryLockGC() (release func(), err error) {
	locks := []*lock.Lock{s.Index.Lock(), s.Activity()}
	for i, l := range locks {
		if err := l.TryLock(); err != nil {
			for _, h := range locks[:i] {
				h.Unlock() //nolint:errcheck
			}
			return nil, fmt.Errorf("%s: %w", s.cfg.Kind, err)
		}
	}
	return func() {
		for _, l := range locks {
			l.Unlock() //nolint:errcheck
		}
	}, nil
}

// Collect removes blobs (and their entries in the keyed dirs) that no index entry references and
// pinned does not name, and work files and dirs older than TempMaxAge. Call it only while
// holding TryLockGC.
func (s *Store[E, P]) Collect(pinned map[string]struct{}, now time.Time) ([]string, error) {
	idx, err := s.Index.ReadUnlocked()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for id := range pinned {
		keep[id] = true
	}
	for _, e := range idx.Images {
		for _, id := range P(e).BlobIDs() {
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
		if id, ok := strings.CutSuffix(d.Name(), s.cfg.BlobExt); ok && !keep[id] {
			drop(filepath.Join(blobDir, d.Name()))
		}
	}
	for _, name := range s.cfg.KeyedDirs {
		dir := filepath.Join(s.cfg.Dir, name)
		ents, err := readDir(dir)
		errs = append(errs, err)
		for _, d := range ents {
			if !keep[d.Name()] {
				drop(filepath.Join(dir, d.Name()))
			}
		}
	}
	temps, err := readDir(s.TempDir())
	errs = append(errs, err)
	for _, d := range temps {
		if info, err := d.Info(); err == nil && now.Sub(info.ModTime()) > TempMaxAge {
			drop(filepath.Join(s.TempDir(), d.Name()))
		}
	}
	return removed, errors.Join(errs...)
}

// Hex strips the algorithm from a digest.
func Hex(digest string) string {
	_, hex, _ := strings.Cut(digest, ":")
	return hex
}

func readDir(dir string) ([]fs.DirEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return ents, err
}
