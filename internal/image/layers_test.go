package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeTar(t *testing.T, name string, entries ...entry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, layerTar(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileSum(t *testing.T, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// `image import NAME a.tar b.tar` makes one layer per file, bottom first (gzip-wrapped files
// too), as the original; the same files give the same image digest.
func TestImportTarFilesAsLayers(t *testing.T) {
	needOCI(t)
	ctx := context.Background()
	m, _ := newManager(t)
	base := writeTar(t, "base.tar", file("boot/vmlinuz-1", "k"), file("boot/initrd.img-1", "i"), file("etc/base", "b"))
	app := writeTar(t, "app.tar", file("etc/app", "a"))
	appGz := gzipFile(t, app)
	img, err := m.Import(ctx, "layered", []string{base, appGz}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || img.Layers[0].Digest != "sha256:"+fileSum(t, base) || img.Layers[1].Digest != "sha256:"+fileSum(t, app) {
		t.Fatalf("layers %+v, want base then app, keyed by their tars' sha256", img.Layers)
	}
	again, err := m.Import(ctx, "layered2", []string{base, app}, nil)
	if err != nil || again.Digest != img.Digest {
		t.Fatalf("same tars, different digest: %v %s vs %s", err, again.Digest, img.Digest)
	}

	// An image tar is imported on its own, not as a layer; nothing is stored.
	imageTar := writeTar(t, "image.tar", file("manifest.json", "[]"))
	if _, err := m.Import(ctx, "bad", []string{base, imageTar}, nil); err == nil || !strings.Contains(err.Error(), "is an image tar, not a layer") {
		t.Errorf("Import = %v, want the image tar refused", err)
	}
	if _, err := m.Resolve(ctx, "bad"); err == nil {
		t.Error("a refused import left an image")
	}
}
