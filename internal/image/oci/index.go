// Package oci stores OCI images as per-layer EROFS blobs plus the boot files they carry.
//
// Layout under Dir (<root>/oci):
//
//	db/images.json, db/images.lock   index: ref → manifest digest, layers, boot layers
//	blobs/<diffid hex>.erofs         one read-only EROFS image per layer, shared by all images
//	boot/<diffid hex>/vmlinuz, initrd.img   boot files, keyed by the layer that held them
//	temp/pull-*/, temp/import-*/     work dirs; nothing in blobs/ or boot/ is ever half-written
//	locks/layer-<hex>.lock           one conversion of a layer at a time
//	locks/activity.lock              shared by every pull/import, exclusive for GC
//
// Layers are keyed by their DiffID (digest of the uncompressed tar): the same layer pulled with
// another compression, or imported from `docker save`, is converted once.
package oci

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/cocoonstack/cocoon/internal/image/blobstore"
)

const schemaVersion = 1

// Origins of an entry.
const (
	OriginRegistry = "registry"
	OriginImport   = "import"
)

// Entry is one image in the index.
type Entry struct {
	Ref            string        `json:"ref"`
	ManifestDigest string        `json:"manifest_digest"`
	Layers         []LayerRecord `json:"layers"` // bottom → top
	KernelLayer    string        `json:"kernel_layer"`
	InitrdLayer    string        `json:"initrd_layer"`
	Size           int64         `json:"size"`
	CreatedAt      time.Time     `json:"created_at"`
	Origin         string        `json:"origin"`
	Platform       string        `json:"platform,omitempty"` // linux/ARCH; "" = the host's
}

// LayerRecord names one layer by its DiffID ("sha256:<hex>").
type LayerRecord struct {
	Digest string `json:"digest"`
}

type index = blobstore.Index[Entry]

// Config configures a Store.
type Config struct {
	Dir       string            // <root>/oci
	PoolSize  int               // layers converted at once (>= 1)
	Progress  io.Writer         // progress goes here only when it is a terminal
	Insecure  bool              // plain HTTP to any registry (localhost and 127.0.0.1 always are)
	Transport http.RoundTripper // nil: the default transport
	// MaxLayerBytes caps what a layer or an imported image tar may expand to; <= 0 means
	// untar.DefaultMaxBytes. The free space of the temp dir caps it too (see limit.go).
	MaxLayerBytes int64
}

// base is embedded through an alias so its methods (Entries, Remove, TryLockGC, Collect,
// BlobPath…) are Store's without exposing a field named after it.
type base = blobstore.Store[Entry, *Entry]

// Store is the OCI image store.
type Store struct {
	*base
	cfg Config
}

// New returns the store kept under cfg.Dir; nothing is created until first use.
func New(cfg Config) *Store {
	if cfg.PoolSize < 1 {
		cfg.PoolSize = 1
	}
	return &Store{cfg: cfg, base: blobstore.New[Entry](blobstore.Config{
		Dir: cfg.Dir, Kind: "oci images", BlobExt: ".erofs", KeyedDirs: []string{"boot"}, Schema: schemaVersion,
	})}
}

// KernelPath is the kernel extracted from layer hex.
func (s *Store) KernelPath(hex string) string {
	return filepath.Join(s.bootDir(hex), kernelName)
}

// InitrdPath is the initrd extracted from layer hex.
func (s *Store) InitrdPath(hex string) string {
	return filepath.Join(s.bootDir(hex), initrdName)
}

func (s *Store) bootDir(hex string) string { return filepath.Join(s.cfg.Dir, "boot", hex) }

// BlobIDs are the layer hexes an image needs (boot files are keyed by layer hexes too).
func (e *Entry) BlobIDs() []string {
	seen := map[string]bool{}
	var out []string
	add := func(h string) {
		if h != "" && !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, l := range e.Layers {
		add(blobstore.Hex(l.Digest))
	}
	add(blobstore.Hex(e.KernelLayer))
	add(blobstore.Hex(e.InitrdLayer))
	return out
}

// complete reports whether every file e needs is present, and their total size.
func (s *Store) complete(e *Entry) (int64, error) {
	paths := []string{s.KernelPath(blobstore.Hex(e.KernelLayer)), s.InitrdPath(blobstore.Hex(e.InitrdLayer))}
	for _, l := range e.Layers {
		paths = append(paths, s.BlobPath(blobstore.Hex(l.Digest)))
	}
	var size int64
	seen := map[string]bool{}
	for _, p := range paths {
		if seen[p] {
			continue
		}
		seen[p] = true
		n, err := fileSize(p)
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
}

// fileSize returns the size of a non-empty regular file.
func fileSize(p string) (int64, error) {
	st, err := os.Stat(p)
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() || st.Size() == 0 {
		return 0, fmt.Errorf("%s is not a non-empty regular file", p)
	}
	return st.Size(), nil
}
