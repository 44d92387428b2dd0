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
	"time"

	"github.com/cocoonstack/cocoon/internal/image/blobstore"
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
func (e *Entry) BlobIDs() []string { return []string{blobstore.Hex(e.ContentSum)} }

type index = blobstore.Index[Entry]

// Config configures a Store.
type Config struct {
	Dir      string       // <root>/cloudimg
	Progress io.Writer    // progress goes here only when it is a terminal
	Client   *http.Client // nil: http.DefaultClient
}

// base is embedded through an alias so its methods (Entries, Remove, TryLockGC, Collect,
// BlobPath…) are Store's without exposing a field named after it.
type base = blobstore.Store[Entry, *Entry]

// Store is the cloud image store.
type Store struct {
	*base
	cfg Config
}

// New returns the store kept under cfg.Dir; nothing is created until first use.
func New(cfg Config) *Store {
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	return &Store{cfg: cfg, base: blobstore.New[Entry](blobstore.Config{
		Dir: cfg.Dir, Kind: "cloud images", BlobExt: ".qcow2", Schema: schemaVersion,
	})}
}

// valid returns the entry for key when its blob is present.
func (s *Store) valid(ctx context.Context, key string) (*Entry, bool) {
	found, err := s.Lookup(ctx, key)
	if err != nil || found == nil {
		return nil, false
	}
	return found, blobOK(s.BlobPath(blobstore.Hex(found.ContentSum)))
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
