package view

import (
	"time"

	"github.com/cocoonstack/cocoon/internal/image"
)

// Image is the image record of `image inspect` and `image list -o json`.
type Image struct {
	ID        string    `json:"id"`   // OCI manifest digest, or the cloud image's content sha256
	Name      string    `json:"name"` // the ref as pulled, the URL, or the import name
	Type      string    `json:"type"` // oci | cloudimg
	Size      int64     `json:"size"` // bytes stored
	CreatedAt time.Time `json:"created_at"`

	// Added by this implementation.
	Source      string        `json:"source,omitempty"` // registry, the URL, or import
	Layers      []image.Layer `json:"layers,omitempty"` // OCI, bottom → top
	KernelPath  string        `json:"kernel_path,omitempty"`
	InitrdPath  string        `json:"initrd_path,omitempty"`
	BlobPath    string        `json:"blob_path,omitempty"`    // cloud qcow2
	BlobDigest  string        `json:"blob_digest,omitempty"`  // cloud: sha256 of the stored qcow2
	VirtualSize int64         `json:"virtual_size,omitempty"` // cloud disk size
	Platform    string        `json:"platform,omitempty"`     // OCI: linux/amd64 or linux/arm64
}

// ImageOf builds the image record of a stored image.
func ImageOf(i *image.Image) Image {
	return Image{ID: i.Digest, Name: i.Ref, Type: string(i.Kind), Size: i.Size, CreatedAt: i.CreatedAt, Source: i.Source,
		Layers: i.Layers, KernelPath: i.KernelPath, InitrdPath: i.InitrdPath, BlobPath: i.BlobPath, BlobDigest: i.BlobDigest,
		VirtualSize: i.VirtualSize, Platform: i.Platform}
}

// ImagesOf builds image records; never nil.
func ImagesOf(imgs []image.Image) []Image {
	out := make([]Image, 0, len(imgs))
	for i := range imgs {
		out = append(out, ImageOf(&imgs[i]))
	}
	return out
}
