// Package image manages VM images of two kinds behind one API: OCI images (pulled from a
// registry or imported from an image tar, stored as per-layer EROFS blobs plus boot files) and
// cloud images (qcow2/raw by URL or import, stored as qcow2 blobs).
//
// Blobs are content-addressed and shared; index entries name them. Removing an image drops its
// entry only: GC deletes blobs that no entry references and no VM or snapshot pins.
package image

import (
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// Kind is the kind of an image.
type Kind string

// Kinds of images.
const (
	KindOCI   Kind = "oci"
	KindCloud Kind = "cloudimg"
)

// Layer is one read-only EROFS layer of an OCI image.
type Layer struct {
	Digest string `json:"digest"` // layer DiffID, "sha256:<hex>"
	Path   string `json:"path"`   // absolute path of the EROFS blob
}

// Image is one stored image, with the paths a VM needs.
type Image struct {
	Kind        Kind      `json:"kind"`
	Ref         string    `json:"ref"`                    // index key: ref as pulled, URL, or import name
	Digest      string    `json:"digest"`                 // OCI manifest digest, or cloud content sha256
	BlobDigest  string    `json:"blob_digest,omitempty"`  // cloud: sha256 of the stored qcow2
	Layers      []Layer   `json:"layers,omitempty"`       // OCI, bottom → top
	KernelPath  string    `json:"kernel_path,omitempty"`  // OCI
	InitrdPath  string    `json:"initrd_path,omitempty"`  // OCI
	BlobPath    string    `json:"blob_path,omitempty"`    // cloud qcow2
	VirtualSize int64     `json:"virtual_size,omitempty"` // cloud
	Size        int64     `json:"size"`                   // bytes stored
	CreatedAt   time.Time `json:"created_at"`
	Source      string    `json:"source"` // "registry", the URL, or "import"
	// Platform is linux/ARCH; cloud disks carry none, so they are taken as the host's.
	Platform string `json:"platform,omitempty"`
}

// BlobIDs are the blob IDs a VM created from the image must pin so GC keeps them: OCI layer
// hexes (boot files are keyed by the hex of the layer that held them), or the cloud blob hex.
func (i *Image) BlobIDs() []string {
	if i.Kind == KindCloud {
		return []string{digestHex(i.Digest)}
	}
	seen := map[string]bool{}
	var out []string
	add := func(id string) {
		if id != "" && id != "." && !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	for _, l := range i.Layers {
		add(digestHex(l.Digest))
	}
	add(filepath.Base(filepath.Dir(i.KernelPath)))
	add(filepath.Base(filepath.Dir(i.InitrdPath)))
	return out
}

// PullStats says what a Pull did.
type PullStats struct {
	Layers    int   `json:"layers"`    // OCI layers, or 1 for a cloud image
	Converted int   `json:"converted"` // blobs made by this pull
	Reused    int   `json:"reused"`    // blobs that were already stored
	Bytes     int64 `json:"bytes"`     // bytes downloaded (cloud) or uncompressed layer bytes read (OCI)
	UpToDate  bool  `json:"up_to_date"`
}

// Options configure a Manager.
type Options struct {
	PoolSize   int          // layers converted at once; <= 0 means the number of CPUs
	Progress   io.Writer    // progress bars go here, only when it is a terminal
	Insecure   bool         // plain HTTP to any registry (localhost/127.0.0.1 always are)
	HTTPClient *http.Client // for registries and cloud image downloads; nil: defaults
	// MaxLayerBytes caps what one OCI layer or imported image tar may expand to (the free space
	// of the temp dir caps it too); <= 0 means untar.DefaultMaxBytes.
	MaxLayerBytes int64
}

var (
	// ErrNotFound: no image matches the ref.
	ErrNotFound = errors.New("image not found")
	// ErrAmbiguous: the ref matches images of both kinds, or several different images.
	ErrAmbiguous = errors.New("ambiguous image reference")
)

func digestHex(d string) string {
	if _, h, ok := strings.Cut(d, ":"); ok {
		return h
	}
	return d
}
