package oci

import (
	"errors"
	"fmt"
	"io"

	units "github.com/docker/go-units"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/image/untar"
)

// maxLayer is the configured max_layer_size.
func (s *Store) maxLayer() int64 {
	if s.cfg.MaxLayerBytes > 0 {
		return s.cfg.MaxLayerBytes
	}
	return untar.DefaultMaxBytes
}

// limit is the most bytes one layer (or an imported image tar) may expand to inside dir: the
// configured max_layer_size, or the space left on dir's filesystem when that is less, so a
// layer that cannot fit fails at its first oversized header instead of filling the disk.
func (s *Store) limit(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return min(s.maxLayer(), int64(st.Bavail)*st.Bsize), nil
}

// explainLimit adds to an ErrTooLarge what the bound is made of and what to do.
func (s *Store) explainLimit(err error) error {
	if !errors.Is(err, untar.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("%w (bound: max_layer_size %s or the free space in %s, whichever is less): the image is broken or malicious; if it is genuine, free disk space or raise max_layer_size",
		err, units.BytesSize(float64(s.maxLayer())), s.TempDir())
}

// copyBounded copies r to w, failing with untar.ErrTooLarge once more than limit bytes came.
func copyBounded(w io.Writer, r io.Reader, limit int64) error {
	n, err := io.Copy(w, io.LimitReader(r, limit+1))
	if err != nil {
		return err
	}
	if n > limit {
		return fmt.Errorf("%w: input is larger than its limit of %s", untar.ErrTooLarge, units.BytesSize(float64(limit)))
	}
	return nil
}
