package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// sparseTar makes, with GNU tar, a 10 KiB tar holding one sparse file "bomb" of size (1T, 3M…).
func sparseTar(t testing.TB, size string) []byte {
	t.Helper()
	needBin(t, "tar", "truncate")
	dir := t.TempDir()
	if out, err := exec.Command("truncate", "-s", size, filepath.Join(dir, "bomb")).CombinedOutput(); err != nil {
		t.Fatalf("truncate: %v: %s", err, out)
	}
	out, err := exec.Command("tar", "-C", dir, "--sparse", "-cf", "-", "bomb").Output()
	if err != nil {
		t.Fatalf("tar: %v", err)
	}
	if len(out) > 10<<10 {
		t.Fatalf("bomb tar is %d bytes", len(out))
	}
	return out
}

func gzipBytes(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data) //nolint:errcheck
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImportRefusesExpansionBombs(t *testing.T) {
	needOCI(t)
	bomb := sparseTar(t, "1T")
	zeros := layerTar(t, file("zeros", string(make([]byte, 3<<20))))
	cases := map[string]struct {
		input    []byte
		maxLayer int64
		want     string
	}{
		"sparse 1 TiB":            {bomb, 0, `tar entry "bomb": too large: entry declares 1TiB`},
		"gzipped sparse 1 TiB":    {gzipBytes(t, bomb), 0, `tar entry "bomb": too large`},
		"file over max_layer":     {sparseTar(t, "3M"), 1 << 20, `entry declares 3MiB, which takes the layer past its limit of 1MiB`},
		"gzip bomb over max_size": {gzipBytes(t, zeros), 1 << 20, "input is larger than its limit of 1MiB"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			m := NewManager(root, Options{PoolSize: 2, MaxLayerBytes: c.maxLayer})
			_, err := m.Import(context.Background(), "bomb", nil, bytes.NewReader(c.input))
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "max_layer_size") ||
				strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one line containing %q and naming max_layer_size", err, c.want)
			}
			assertNothingStored(t, m, root)
		})
	}
}

func TestPullRefusesExpansionBombs(t *testing.T) {
	needOCI(t)
	// Zeros after the tar's end are read for the digest, and count against the bound too.
	trailing := append(layerTar(t, file("etc/hostname", "x")), make([]byte, 3<<20)...)
	cases := map[string]struct {
		layer    []byte
		maxLayer int64
		want     string
	}{
		"sparse 1 TiB":            {sparseTar(t, "1T"), 0, `tar entry "bomb": too large: entry declares 1TiB`},
		"zeros after the tar end": {trailing, 1 << 20, "read layer after its tar end: too large"},
	}
	reg := startRegistry(t)
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(c.layer)), nil })
			if err != nil {
				t.Fatal(err)
			}
			ref := reg.push(t, "bomb/"+strings.ToLower(strings.ReplaceAll(name, " ", "-"))+":1", makeImage(t, bootLayer(t, "b"), l))
			root := t.TempDir()
			m := NewManager(root, Options{PoolSize: 1, MaxLayerBytes: c.maxLayer})
			_, _, err = m.Pull(context.Background(), ref, false)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			// Not even the good layer's blob is published for a refused image.
			assertNothingStored(t, m, root)
		})
	}
}

// The bound is lowered to the free space where layers are extracted: a layer that cannot fit
// fails at its header instead of filling the disk.
func TestLayerBoundFollowsFreeSpace(t *testing.T) {
	needOCI(t)
	needBin(t, "mount", "umount")
	root := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", root).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", root).Run() }) //nolint:errcheck
	m := NewManager(root, Options{PoolSize: 1})
	_, err := m.Import(context.Background(), "big", nil, bytes.NewReader(sparseTar(t, "16M")))
	if err == nil || !strings.Contains(err.Error(), "entry declares 16MiB, which takes the layer past its limit of 7.") {
		t.Fatalf("err = %v, want the 16 MiB entry refused against 8 MiB of free space", err)
	}
	assertNothingStored(t, m, root)
}
