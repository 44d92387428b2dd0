package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func gzipFile(t testing.TB, src string) string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data) //nolint:errcheck
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := src + ".gz"
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// split cuts src into n parts, the way large images are published.
func split(t testing.TB, src string, n int) []string {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	size := len(data)/n + 1
	for i := 0; i < len(data); i += size {
		p := filepath.Join(t.TempDir(), "part")
		if err := os.WriteFile(p, data[i:min(i+size, len(data))], 0o644); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, p)
	}
	return parts
}

func TestImportCloudImages(t *testing.T) {
	needBin(t, "qemu-img")
	qcow := qcow2Disk(t, "1.1")
	raw := rawDisk(t)
	ctx := context.Background()
	open := func(p string) io.Reader {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	cases := []struct {
		name   string
		files  []string
		stdin  io.Reader
		source string
	}{
		{"qcow2-file", []string{qcow}, nil, qcow},
		{"raw-file", []string{raw}, nil, raw},
		{"qcow2-stdin", nil, open(qcow), qcow},
		{"gzip-file", []string{gzipFile(t, qcow)}, nil, qcow},
		{"gzip-stdin", nil, open(gzipFile(t, raw)), raw},
		{"multi-part", split(t, qcow, 3), nil, qcow},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, root := newManager(t)
			img, err := m.Import(ctx, c.name, c.files, c.stdin)
			if err != nil {
				t.Fatal(err)
			}
			if img.Ref != c.name || img.Source != "import" {
				t.Errorf("image %+v", img)
			}
			checkCloudBlob(t, img, root, c.source)
			if got, err := m.Resolve(ctx, c.name); err != nil || got.Digest != img.Digest {
				t.Errorf("Resolve = %+v, %v", got, err)
			}
		})
	}
}

func TestImportRefusesWhatIsNotAnImage(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readme := write("README.md", []byte(strings.Repeat("# Cocoon\n\nSome text that is not a disk.\n", 40)))
	oddBinary := write("odd.bin", mbrDisk(1001))
	random := make([]byte, 64<<10)
	rng := rand.New(rand.NewPCG(3, 4)) // fixed seed: these bytes hold no partition table or filesystem
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	randomFile := write("random.bin", random)
	xz := write("disk.xz", append([]byte{0xfd, '7', 'z', 'X', 'Z', 0}, make([]byte, 506)...))
	cases := map[string]struct {
		files []string
		stdin io.Reader
		want  string
	}{
		"readme":       {[]string{readme}, nil, "looks like a text file"},
		"gzip readme":  {[]string{gzipFile(t, readme)}, nil, "looks like a text file"},
		"odd size":     {[]string{oddBinary}, nil, "not a whole number of 512-byte sectors"},
		"random bytes": {[]string{randomFile}, nil, "cannot detect file type"},
		"random stdin": {nil, bytes.NewReader(random), "cannot detect file type"},
		"blank disk":   {[]string{write("blank.raw", make([]byte, 1<<20))}, nil, "cannot detect file type"},
		"xz":           {[]string{xz}, nil, "xz-compressed"},
		"empty stdin":  {nil, strings.NewReader(""), "too small"},
		"missing file": {[]string{filepath.Join(dir, "nope")}, nil, "check the path"},
		"no input":     {nil, nil, "no input"},
	}
	for name, c := range cases {
		m, root := newManager(t)
		_, err := m.Import(context.Background(), "x", c.files, c.stdin)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one line containing %q", name, err, c.want)
		}
		assertNothingStored(t, m, root)
	}
	m, _ := newManager(t)
	for _, bad := range []string{"", "has space", "https://x/y"} {
		if _, err := m.Import(context.Background(), bad, []string{readme}, nil); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
}

// legacyDockerSave writes img the way `docker save` did before Docker 25: manifest.json, the
// config and uncompressed layer tars.
func legacyDockerSave(t testing.TB, img v1.Image) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "legacy.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(data) //nolint:errcheck
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	add("config.json", cfg)
	layers, _ := img.Layers()
	var names []string
	for i, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		names = append(names, fmt.Sprintf("l%d/layer.tar", i))
		add(names[i], data)
	}
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"vm/imp:1"}, "Layers": names}})
	add("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// tarDir packs dir into a tar file.
func tarDir(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "layout.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImportOCITars(t *testing.T) {
	needOCI(t)
	ctx := context.Background()
	base := bootLayer(t, "imp")
	img := makeImage(t, base, layer(t, file("app", "app")))
	baseID, _ := base.DiffID()

	dockerTar := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("example.com/vm/imp:1")
	if err := tarball.WriteToFile(dockerTar, tag, img); err != nil {
		t.Fatal(err)
	}
	layoutDir := t.TempDir()
	lp, err := layout.Write(layoutDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootfs, layerTar(t, file("boot/vmlinuz-1", "k"), file("boot/initrd.img-1", "i"), file("bin/sh", "sh")), 0o644); err != nil {
		t.Fatal(err)
	}
	dockerGz := gzipFile(t, dockerTar)
	cases := []struct {
		name   string
		files  []string
		layers int
	}{
		{"docker-save", []string{dockerTar}, 2},
		{"docker-save-gzip", []string{dockerGz}, 2},
		{"docker-save-uncompressed", []string{legacyDockerSave(t, img)}, 2},
		{"docker-save-parts", split(t, dockerTar, 2), 2},
		{"oci-layout", []string{tarDir(t, layoutDir)}, 2},
		{"rootfs", []string{rootfs}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, root := newManager(t)
			got, err := m.Import(ctx, c.name, c.files, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Kind != KindOCI || got.Ref != c.name || got.Source != "import" || len(got.Layers) != c.layers {
				t.Fatalf("image %+v", got)
			}
			for _, l := range got.Layers {
				if _, err := os.Stat(l.Path); err != nil {
					t.Error(err)
				}
			}
			if c.layers == 2 && got.Layers[0].Digest != baseID.String() {
				t.Errorf("bottom layer %s, want %s", got.Layers[0].Digest, baseID)
			}
			if data, err := os.ReadFile(got.KernelPath); err != nil || len(data) == 0 {
				t.Errorf("kernel: %v", err)
			}
			if names := dirNames(t, filepath.Join(root, "oci/temp")); len(names) != 0 {
				t.Errorf("work dirs left: %v", names)
			}
		})
	}
	t.Run("stdin", func(t *testing.T) {
		m, _ := newManager(t)
		f, err := os.Open(dockerGz)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if got, err := m.Import(ctx, "from-stdin", nil, f); err != nil || got.Kind != KindOCI {
			t.Fatalf("%+v %v", got, err)
		}
	})
}

func TestImportNameCannotSpanKinds(t *testing.T) {
	needOCI(t)
	needBin(t, "qemu-img")
	ctx := context.Background()
	m, _ := newManager(t)
	if _, err := m.Import(ctx, "dual", []string{rawDisk(t)}, nil); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(rootfs, layerTar(t, file("boot/vmlinuz-1", "k"), file("boot/initrd.img-1", "i")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := m.Import(ctx, "dual", []string{rootfs}, nil)
	if err == nil || !strings.Contains(err.Error(), "already used by a cloudimg image") {
		t.Fatalf("err = %v", err)
	}
	// A pulled OCI ref equal to a cloud import name makes the name ambiguous.
	reg := startRegistry(t)
	ref := reg.push(t, "vm/amb:1", makeImage(t, bootLayer(t, "amb")))
	if _, err := m.Import(ctx, ref, []string{rawDisk(t)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Pull(ctx, ref, false); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Resolve(ctx, ref); !errors.Is(err, ErrAmbiguous) || !strings.Contains(err.Error(), "both an oci image") {
		t.Errorf("Resolve = %v, want ErrAmbiguous naming both kinds", err)
	}
	if _, err := m.Remove(ctx, []string{ref}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("Remove = %v, want ErrAmbiguous", err)
	}
}

func TestProgressOnlyOnTerminal(t *testing.T) {
	needBin(t, "qemu-img")
	fs := serve(t, map[string]string{"disk.raw": rawDisk(t)})
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	out := make(chan string)
	go func() {
		data, _ := io.ReadAll(ptmx) // ends with EIO once tty is closed
		out <- string(data)
	}()
	root := t.TempDir()
	if _, _, err := NewManager(root, Options{Progress: tty}).Pull(context.Background(), fs.srv.URL+"/disk.raw", false); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	if got := <-out; !strings.Contains(got, "disk.raw") || !strings.Contains(got, "1/1 done") {
		t.Errorf("terminal got %q, want progress for disk.raw", got)
	}
	var buf bytes.Buffer
	if _, _, err := NewManager(t.TempDir(), Options{Progress: &buf}).Pull(context.Background(), fs.srv.URL+"/disk.raw", false); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Errorf("progress written to a non-terminal: %q", buf.String())
	}
}
