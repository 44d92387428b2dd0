package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// guestLayout returns the OCI layout os-image/ built for name, or skips.
func guestLayout(t testing.TB, name string) v1.Image {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "os-image", ".cache", "out", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err != nil {
		t.Skipf("os-image/.cache/out/%s not found: run make images", name)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil || len(im.Manifests) == 0 {
		t.Fatalf("layout %s has no manifest: %v", dir, err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPullGuestImages(t *testing.T) {
	for _, name := range []string{"tiny", "debian"} {
		t.Run(name, func(t *testing.T) {
			img := guestLayout(t, name)
			needOCI(t)
			reg := startRegistry(t)
			ref := reg.push(t, "cocoon/"+name+":test", img)
			m, _ := newManager(t)
			got, st, err := m.Pull(context.Background(), ref, false)
			if err != nil {
				t.Fatal(err)
			}
			layers, _ := img.Layers()
			if st.Converted != len(layers) || len(got.Layers) != len(layers) {
				t.Errorf("stats %+v for %d layers", st, len(layers))
			}
			for _, p := range []string{got.KernelPath, got.InitrdPath} {
				if fi, err := os.Stat(p); err != nil || fi.Size() < 1<<20 {
					t.Errorf("boot file %s: %v %v", p, fi, err)
				}
			}
			lowers := make([]string, len(got.Layers))
			for i, l := range got.Layers {
				lowers[len(got.Layers)-1-i] = mountEROFS(t, l.Path)
			}
			root := lowers[0]
			if len(lowers) > 1 {
				root = mountOverlay(t, lowers)
			}
			if _, err := os.Stat(filepath.Join(root, "bin/sh")); err != nil {
				t.Errorf("stacked image has no /bin/sh: %v", err)
			}
			t.Logf("%s: %d layers, %d MB uncompressed, %d MB stored", name, len(layers), st.Bytes>>20, got.Size>>20)
		})
	}
}
