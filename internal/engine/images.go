package engine

import (
	"context"
	"io"

	"github.com/cocoonstack/cocoon/internal/image"
)

// PullImage pulls an OCI image (for plat, "" = the host's platform) or a cloud image URL.
func (e *Engine) PullImage(ctx context.Context, ref, plat string, force bool) (*image.Image, image.PullStats, error) {
	return e.images.PullFor(ctx, ref, plat, force)
}

// ImportImage imports files (or stdin when files is empty) as image name.
func (e *Engine) ImportImage(ctx context.Context, name string, files []string, stdin io.Reader) (*image.Image, error) {
	return e.images.Import(ctx, name, files, stdin)
}

// ListImages lists all local images.
func (e *Engine) ListImages(ctx context.Context) ([]image.Image, error) { return e.images.List(ctx) }

// InspectImage resolves one image.
func (e *Engine) InspectImage(ctx context.Context, ref string) (*image.Image, error) {
	return e.images.Resolve(ctx, ref)
}

// RemoveImages drops index entries; blobs that VMs or snapshots use stay until GC proves them
// unreferenced.
func (e *Engine) RemoveImages(ctx context.Context, refs []string) ([]string, error) {
	return e.images.Remove(ctx, refs)
}
