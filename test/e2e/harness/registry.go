package harness

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is an OCI registry (go-containerregistry pkg/registry) on 127.0.0.1.
type Registry struct {
	t    testing.TB
	srv  *httptest.Server
	Host string // 127.0.0.1:port
}

// NewRegistry starts an empty registry that stops when the test ends.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return &Registry{t: t, srv: srv, Host: strings.TrimPrefix(srv.URL, "http://")}
}

// PushLayout pushes the single image of an OCI layout dir as repo:tag and returns the ref.
func (r *Registry) PushLayout(layoutDir, repoTag string) string {
	r.t.Helper()
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		r.t.Fatalf("open layout %s: %v", layoutDir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		r.t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil || len(m.Manifests) == 0 {
		r.t.Fatalf("layout %s has no manifest: %v", layoutDir, err)
	}
	img, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		r.t.Fatal(err)
	}
	ref := r.Host + "/" + repoTag
	tag, err := name.NewTag(ref)
	if err != nil {
		r.t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		r.t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// FileServer serves files of dir over HTTP on 127.0.0.1 until the test ends.
func FileServer(t testing.TB, dir string) string {
	t.Helper()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL
}

// ServeFile serves one file at URL/<base name>.
func ServeFile(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	return FileServer(t, filepath.Dir(path)) + "/" + filepath.Base(path)
}
