package image

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: OCI layer conversion sets owners, device nodes and trusted.* xattrs, and mount tests mount EROFS")
	}
}

func needBin(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s binary not found", b)
		}
	}
}

// needOCI skips unless OCI conversion can run here.
func needOCI(t testing.TB) {
	t.Helper()
	needRoot(t)
	needBin(t, "mkfs.erofs")
}

// entry describes one tar entry of a test layer.
type entry struct {
	name     string
	body     string
	typ      byte // 0: regular file
	link     string
	mode     int64
	uid, gid int
	mtime    time.Time
}

func file(name, body string) entry { return entry{name: name, body: body} }

func layerTar(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: e.mtime}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func layer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	data := layerTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// bootLayer is a bottom layer with a kernel and an initrd; tag makes its content unique.
func bootLayer(t testing.TB, tag string) v1.Layer {
	return layer(t, file("boot/vmlinuz-6.1.0-"+tag, "kernel "+tag), file("boot/initrd.img-6.1.0-"+tag, "initrd "+tag),
		entry{name: "boot/vmlinuz", typ: tar.TypeSymlink, link: "vmlinuz-6.1.0-" + tag}, file("etc/os-release", "ID="+tag))
}

func makeImage(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// testRegistry is an in-process registry on 127.0.0.1 that counts blob downloads and can hold
// them until released.
type testRegistry struct {
	host string
	srv  *httptest.Server

	mu    sync.Mutex
	gets  map[string]int // blob digest → GETs
	gate  chan struct{}  // when set, GETs of the held blob wait for it to close
	held  string         // digest of the held blob
	inGet chan struct{}  // signalled when a held GET starts waiting
}

func startRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{gets: map[string]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			digest := r.URL.Path[i+len("/blobs/"):]
			tr.mu.Lock()
			tr.gets[digest]++
			gate, in := tr.gate, tr.inGet
			if digest != tr.held {
				gate = nil
			}
			tr.mu.Unlock()
			if gate != nil {
				select {
				case in <- struct{}{}:
				default:
				}
				select {
				case <-gate:
				case <-r.Context().Done():
					return
				}
			}
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref.String()
}

func (tr *testRegistry) blobGets(t testing.TB, l v1.Layer) int {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.gets[d.String()]
}

// hold makes GETs of layer l wait until the returned release is called.
func (tr *testRegistry) hold(t testing.TB, l v1.Layer) (started <-chan struct{}, release func()) {
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.gate, tr.inGet, tr.held = make(chan struct{}), make(chan struct{}, 1), d.String()
	gate, in := tr.gate, tr.inGet
	var once sync.Once
	return in, func() {
		once.Do(func() {
			close(gate)
			tr.mu.Lock()
			tr.gate = nil
			tr.mu.Unlock()
		})
	}
}

func newManager(t testing.TB) (*Manager, string) {
	t.Helper()
	root := t.TempDir()
	return NewManager(root, Options{PoolSize: 2}), root
}

// dirNames lists dir's entries; a missing dir is empty.
func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// assertNothingStored checks that a failed pull or import left no entry, blob or work file.
func assertNothingStored(t testing.TB, m *Manager, root string) {
	t.Helper()
	imgs, err := m.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 0 {
		t.Errorf("index has %d images, want none", len(imgs))
	}
	for _, d := range []string{"oci/blobs", "oci/boot", "oci/temp", "cloudimg/blobs", "cloudimg/temp"} {
		if names := dirNames(t, filepath.Join(root, d)); len(names) != 0 {
			t.Errorf("%s is not empty: %v", d, names)
		}
	}
}

// mountEROFS mounts blob read-only at a new dir and unmounts it in Cleanup.
func mountEROFS(t *testing.T, blob string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "erofs", "-o", "loop,ro", blob, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v: %s", blob, err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() }) //nolint:errcheck
	return dir
}

// mountOverlay stacks lowers (top first) read-only and unmounts in Cleanup.
func mountOverlay(t *testing.T, lowers []string) string {
	t.Helper()
	dir := t.TempDir()
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o", opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount overlay: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() }) //nolint:errcheck
	return dir
}
