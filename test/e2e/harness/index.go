package harness

import (
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PushIndex pushes a multi-platform image as repo:tag: an OCI index of the single image of
// each layout dir, each entry tagged with the platform its config names. It returns the ref.
func (r *Registry) PushIndex(repoTag string, layoutDirs ...string) string {
	r.t.Helper()
	idx := mutate.IndexMediaType(empty.Index, "application/vnd.oci.image.index.v1+json")
	for _, dir := range layoutDirs {
		p, err := layout.FromPath(dir)
		if err != nil {
			r.t.Fatalf("open layout %s: %v", dir, err)
		}
		li, err := p.ImageIndex()
		if err != nil {
			r.t.Fatal(err)
		}
		m, err := li.IndexManifest()
		if err != nil || len(m.Manifests) == 0 {
			r.t.Fatalf("layout %s has no manifest: %v", dir, err)
		}
		img, err := li.Image(m.Manifests[0].Digest)
		if err != nil {
			r.t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			r.t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture}}})
	}
	ref := r.Host + "/" + repoTag
	tag, err := name.NewTag(ref)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.WriteIndex(tag, idx); err != nil {
		r.t.Fatalf("push index %s: %v", ref, err)
	}
	return ref
}
