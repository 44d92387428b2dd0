// Command mkoci writes an OCI image layout holding one linux/ARCH image (amd64 unless -arch
// says otherwise) built from directories, one gzip layer per directory (first = bottom layer).
//
//	mkoci -out DIR -ref NAME [-arch arm64] -layer ROOTFS_DIR [-layer DIR ...]
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/pgzip"
)

type layerDirs []string

func (l *layerDirs) String() string     { return strings.Join(*l, ",") }
func (l *layerDirs) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var layers layerDirs
	out := flag.String("out", "", "output OCI layout directory (replaced atomically)")
	ref := flag.String("ref", "", "value of org.opencontainers.image.ref.name")
	arch := flag.String("arch", "amd64", "image architecture: amd64 or arm64")
	epoch := flag.Int64("epoch", 1704067200, "mtime (unix seconds) for every file and the image")
	flag.Var(&layers, "layer", "directory whose tree becomes a layer (repeatable, bottom first)")
	flag.Parse()
	if *out == "" || *ref == "" || len(layers) == 0 || (*arch != "amd64" && *arch != "arm64") {
		fmt.Fprintln(os.Stderr, "usage: mkoci -out DIR -ref NAME [-arch amd64|arm64] -layer DIR [-layer DIR ...]")
		os.Exit(2)
	}
	if err := run(*out, *ref, *arch, layers, time.Unix(*epoch, 0).UTC()); err != nil {
		slog.Error("mkoci failed", "err", err)
		os.Exit(1)
	}
}

func run(out, ref, arch string, dirs []string, mtime time.Time) error {
	tmp, staging := out+".tmp", out+".layers"
	for _, d := range []string{tmp, staging} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("clear %s: %w", d, err)
		}
		defer os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	img, err := buildImage(staging, arch, dirs, mtime)
	if err != nil {
		return err
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("init layout %s: %w", tmp, err)
	}
	err = p.AppendImage(img,
		layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref}),
		layout.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
	if err != nil {
		return fmt.Errorf("write image to %s: %w", tmp, err)
	}
	if err := os.RemoveAll(out); err != nil {
		return fmt.Errorf("remove old %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("move layout into %s: %w", out, err)
	}
	return nil
}

func buildImage(staging, arch string, dirs []string, mtime time.Time) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read empty config: %w", err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", arch, v1.Time{Time: mtime}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	for i, dir := range dirs {
		gz := filepath.Join(staging, fmt.Sprintf("layer-%d.tar.gz", i))
		if err := writeGzipTar(gz, dir, mtime); err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromFile(gz, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, fmt.Errorf("load layer %s: %w", gz, err)
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created: v1.Time{Time: mtime}, CreatedBy: "mkoci " + filepath.Base(dir),
		}}); err != nil {
			return nil, fmt.Errorf("append layer %s: %w", dir, err)
		}
	}
	return img, nil
}

// writeGzipTar compresses once with parallel gzip; tarball.LayerFromFile then uses the
// file as the compressed blob instead of recompressing the whole rootfs.
func writeGzipTar(path, dir string, mtime time.Time) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer f.Close()
	zw := pgzip.NewWriter(f)
	if err := writeDirTar(zw, dir, mtime); err != nil {
		return fmt.Errorf("tar %s: %w", dir, err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("compress %s: %w", dir, err)
	}
	return f.Close()
}
