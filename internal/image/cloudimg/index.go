// Package cloudimg stores cloud disk images (qcow2 or raw, from a URL or imported) as qcow2 v3
// blobs that VMs use as read-only backing files.
//
// Layout under Dir (<root>/cloudimg):
//
//	db/images.json, db/images.lock   index: URL or import name → content sum, blob digest, sizes
//	blobs/<content hex>.qcow2        mode 0444, keyed by the sha256 of the source bytes
//	temp/pull-*.img, import-*.img, convert-*.qcow2   never visible as blobs until complete
//	locks/url-*.lock, blob-<hex>.lock, activity.lock
package cloudimg

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/lock"
	"github.com/cocoonstack/cocoon/internal/store"
)

const schemaVersion = 1

// OriginImport is the Source of imported images (pulled ones record their URL).
const OriginImport = "import"

// Entry is one cloud image in the index.
type Entry struct {
	Ref         string    `json:"ref"`
	Source      string    `json:"source"`       // URL, or "import"
	ContentSum  string    `json:"content_sum"`  // sha256 of the downloaded/imported bytes; names the blob
	BlobDigest  string    `json:"blob_digest"`  // sha256 of the stored qcow2 file
	VirtualSize int64     `json:"virtual_size"` // guest-visible disk size
	Size        int64     `json:"size"`         // bytes of the stored blob
	CreatedAt   time.Time `json:"created_at"`
}

// BlobIDs are the blob hexes a VM made from e must pin.
func (e *Entry) BlobIDs() []string { return []string{Hex(e.ContentSum)} }

// Hex strips the algorithm from a digest.
func Hex(digest string) string {
	_, hex, _ := strings.Cut(digest, ":")
	return hex
}

type index struct {
	store.Header
	Images map[string]*Entry `json:"images"`
}

func (i *index) Init() {
	if i.Images == nil {
		i.Images = map[string]*Entry{}
	}
}

// Config configures a Store.
type Config struct {
	Dir      string       // <root>/cloudimg
	Progress io.Writer    // progress goes here only when it is a terminal
	Client   *http.Client // nil: http.DefaultClient
}

// Store is the cloud image store.
type Store struct {
	cfg   Config
	index *store.Store[index, *index]
}

// New returns the store kept under cfg.Dir; nothing is created until first use.
func New(cfg Config) *Store {
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	return &Store{cfg: cfg, index: store.New[index](filepath.Join(cfg.Dir, "db"), "images", schemaVersion)}
}

// BlobPath is the qcow2 blob named by a content hex.
func (s *Store) BlobPath(hex string) string {
	return filepath.Join(s.cfg.Dir, "blobs", hex+".qcow2")
}

func (s *Store) tempDir() string { return filepath.Join(s.cfg.Dir, "temp") }

// activity is held shared by pulls and imports and exclusively by GC.
func (s *Store) activity() *lock.Lock {
	return lock.New(filepath.Join(s.cfg.Dir, "locks", "activity.lock"))
}

// Entries returns a copy of the index.
func (s *Store) Entries(ctx context.Context) (map[string]Entry, error) {
	out := map[string]Entry{}
	err := s.index.Read(ctx, func(idx *index) error {
		for k, e := range idx.Images {
			out[k] = *e
		}
		return nil
	})
	return out, err
}

// Remove drops the index entries keys; blobs stay until GC finds them unreferenced.
func (s *Store) Remove(ctx context.Context, keys []string) error {
	return s.index.Update(ctx, func(idx *index) error {
		for _, k := range keys {
			delete(idx.Images, k)
		}
		return nil
	})
}

// valid returns the entry for key when its blob is present.
func (s *Store) valid(ctx context.Context, key string) (*Entry, bool) {
	var found *Entry
	err := s.index.Read(ctx, func(idx *index) error {
		if e, ok := idx.Images[key]; ok {
			c := *e
			found = &c
		}
		return nil
	})
	if err != nil || found == nil {
		return nil, false
	}
	return found, blobOK(s.BlobPath(Hex(found.ContentSum)))
}

func blobOK(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Size() > 0
}

func tempFile(dir, pattern string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	return os.CreateTemp(dir, pattern)
}
