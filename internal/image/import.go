package image

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode"

	"github.com/klauspost/pgzip"

	"github.com/cocoonstack/cocoon/internal/image/oci"
	"github.com/cocoonstack/cocoon/internal/image/sniff"
)

// Import stores an image read from files or, when files is empty, from stdin. The input may be
// gzip-wrapped; what it holds is told by its magic bytes: a qcow2 or raw disk becomes a cloud
// image, an image tar (`docker save`, OCI layout, or a plain root filesystem tar) an OCI image.
// Several tar files are one layer each, bottom first (as the original); other file lists are
// parts of one file (e.g. a split qcow2 or image tar), concatenated in order. A raw disk must be
// a whole number of 512-byte sectors and start with a partition table or a filesystem
// (sniff.Detect). Nothing is stored when the input is refused.
func (m *Manager) Import(ctx context.Context, imageName string, files []string, stdin io.Reader) (*Image, error) {
	if err := checkName(imageName); err != nil {
		return nil, err
	}
	if len(files) > 1 {
		if img, layered, err := m.importLayers(ctx, imageName, files); layered {
			return img, err
		}
	}
	in, closeIn, err := openInput(files, stdin)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", imageName, err)
	}
	defer closeIn()
	r, format, err := unwrap(in)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", imageName, err)
	}
	kind := KindCloud
	if format == sniff.Tar {
		kind = KindOCI
	}
	if err := m.checkNameFree(ctx, imageName, kind); err != nil {
		return nil, err
	}
	if kind == KindOCI {
		e, _, err := m.oci.Import(ctx, imageName, r)
		if err != nil {
			return nil, err
		}
		img := m.fromOCI(imageName, *e)
		return &img, nil
	}
	e, _, err := m.cloud.Import(ctx, imageName, r, format)
	if err != nil {
		return nil, err
	}
	img := m.fromCloud(imageName, *e)
	return &img, nil
}

func checkName(n string) error {
	switch {
	case n == "":
		return errors.New("import: empty image name: give a NAME")
	case len(n) > 255:
		return fmt.Errorf("import: image name is %d characters long: use at most 255", len(n))
	case isURL(n):
		return fmt.Errorf("import %s: a URL cannot be an import name: pull URLs with `cocoon image pull`", n)
	}
	for _, c := range n {
		if unicode.IsSpace(c) || !unicode.IsPrint(c) {
			return fmt.Errorf("import %q: image name contains whitespace or control characters: pick another name", n)
		}
	}
	return nil
}

// checkNameFree refuses a name already used by the other kind, which would make the name
// ambiguous; re-importing over the same kind replaces the entry.
func (m *Manager) checkNameFree(ctx context.Context, n string, kind Kind) error {
	all, err := m.List(ctx)
	if err != nil {
		return err
	}
	for _, img := range all {
		if img.Ref == n && img.Kind != kind {
			return fmt.Errorf("import %s: the name is already used by a %s image: remove it first or pick another name", n, img.Kind)
		}
	}
	return nil
}

func openInput(files []string, stdin io.Reader) (io.Reader, func(), error) {
	if len(files) == 0 {
		if stdin == nil {
			return nil, nil, errors.New("no input: give FILE arguments or pipe the image on stdin")
		}
		return stdin, func() {}, nil
	}
	var readers []io.Reader
	var opened []*os.File
	closeAll := func() {
		for _, f := range opened {
			f.Close()
		}
	}
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("open %s: %w: check the path", p, err)
		}
		opened = append(opened, f)
		readers = append(readers, f)
	}
	return io.MultiReader(readers...), closeAll, nil
}

// unwrap removes one gzip layer if present and returns a reader positioned at the start of the
// image together with its format.
func unwrap(in io.Reader) (io.Reader, sniff.Format, error) {
	br := bufio.NewReaderSize(in, 1<<20)
	format, err := peek(br)
	if err != nil || format != sniff.Gzip {
		return br, format, err
	}
	gz, err := pgzip.NewReader(br)
	if err != nil {
		return nil, "", fmt.Errorf("read gzip: %w", err)
	}
	inner := bufio.NewReaderSize(gz, 1<<20)
	format, err = peek(inner)
	if err != nil {
		return nil, "", err
	}
	if format == sniff.Gzip {
		return nil, "", errors.New("input is gzip inside gzip: decompress it once first")
	}
	return inner, format, nil
}

func peek(br *bufio.Reader) (sniff.Format, error) {
	head, err := br.Peek(sniff.HeadSize)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read input: %w", err)
	}
	return sniff.Detect(head)
}

// importLayers imports files as one layer each when every one is a tar (gzip-wrapped or not);
// it reports false and does nothing otherwise: the files are then parts of one file.
func (m *Manager) importLayers(ctx context.Context, imageName string, files []string) (*Image, bool, error) {
	var layers []oci.NamedReader
	for _, p := range files {
		f, err := os.Open(p)
		if err != nil {
			return nil, true, fmt.Errorf("import %s: open %s: %w: check the path", imageName, p, err)
		}
		defer f.Close()
		// A file that is not a tar on its own (an undetectable middle part, too) means the
		// files are parts of one file: the caller sniffs their concatenation instead.
		r, format, err := unwrap(f)
		if err != nil || format != sniff.Tar {
			return nil, false, nil
		}
		layers = append(layers, oci.NamedReader{Name: p, R: r})
	}
	if err := m.checkNameFree(ctx, imageName, KindOCI); err != nil {
		return nil, true, err
	}
	e, _, err := m.oci.ImportLayers(ctx, imageName, layers)
	if err != nil {
		return nil, true, err
	}
	img := m.fromOCI(imageName, *e)
	return &img, true, nil
}
