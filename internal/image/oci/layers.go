package oci

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// NamedReader is one input of ImportLayers: a decompressed root filesystem tar and the name
// (file path) errors refer to.
type NamedReader struct {
	Name string
	R    io.Reader
}

// ImportLayers stores the image made of one root filesystem tar per input, bottom layer first,
// as the original's `image import NAME a.tar b.tar`. Each layer's ID is the sha256 of its tar;
// the image digest is the sha256 of the layer hexes concatenated, so the same tars in the same
// order give the same image. An image tar (`docker save`, OCI layout) is not a layer and is
// refused: it is imported alone.
func (s *Store) ImportLayers(ctx context.Context, imageName string, layers []NamedReader) (*Entry, Stats, error) {
	work, maxBytes, done, err := s.importWork(ctx)
	if err != nil {
		return nil, Stats{}, err
	}
	defer done()
	src := Source{Key: imageName, Origin: OriginImport}
	all := sha256.New()
	for i, l := range layers {
		p := filepath.Join(work, fmt.Sprintf("layer-%d.tar", i))
		sum, err := stage(l.R, p, maxBytes)
		if err != nil {
			return nil, Stats{}, fmt.Errorf("import %s: layer %d (%s): %w", imageName, i, l.Name, s.explainLimit(err))
		}
		names, err := tarNames(p)
		if err != nil {
			return nil, Stats{}, fmt.Errorf("import %s: layer %d (%s): %w", imageName, i, l.Name, err)
		}
		if names["manifest.json"] || names["index.json"] && names["oci-layout"] {
			return nil, Stats{}, fmt.Errorf("import %s: %s is an image tar, not a layer: import it on its own", imageName, l.Name)
		}
		all.Write([]byte(sum))
		src.Layers = append(src.Layers, fileLayer{path: p, diffID: v1.Hash{Algorithm: "sha256", Hex: sum}})
	}
	src.Digest = "sha256:" + hex.EncodeToString(all.Sum(nil))
	e, st, err := s.Add(ctx, src, false)
	if err != nil {
		return nil, st, fmt.Errorf("import %s: %w", imageName, err)
	}
	return e, st, nil
}

// importWork takes the store's activity lock (so GC waits) and makes a work dir in the temp
// dir, returning it with the bytes an import may expand to there and the function that
// removes it and unlocks.
func (s *Store) importWork(ctx context.Context) (work string, maxBytes int64, done func(), err error) {
	act := s.Activity()
	if err := act.RLock(ctx); err != nil {
		return "", 0, nil, err
	}
	fail := func(err error) (string, int64, func(), error) {
		act.Unlock() //nolint:errcheck
		return "", 0, nil, err
	}
	if err := os.MkdirAll(s.TempDir(), 0o750); err != nil {
		return fail(fmt.Errorf("create temp dir: %w", err))
	}
	work, err = os.MkdirTemp(s.TempDir(), "import-")
	if err != nil {
		return fail(fmt.Errorf("create work dir: %w", err))
	}
	if maxBytes, err = s.limit(work); err != nil {
		os.RemoveAll(work)
		return fail(err)
	}
	return work, maxBytes, func() { os.RemoveAll(work); act.Unlock() }, nil //nolint:errcheck
}
