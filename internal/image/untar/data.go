package untar

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"

	units "github.com/docker/go-units"
)

const (
	holeBlock = 4096    // zero runs are skipped in whole blocks of this size (file offsets stay aligned)
	bufSize   = 1 << 20 // data is read in chunks of this size, a multiple of holeBlock
)

var zeroBlock [holeBlock]byte

// account adds what hdr declares to the layer's total and refuses the entry, before anything of
// it is written, when the total would pass MaxBytes. The data of entries that are skipped counts
// too: the reader still has to get through it.
func (x *extractor) account(hdr *tar.Header) error {
	cost := int64(EntryCost)
	switch hdr.Typeflag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		// header only: archive/tar reads no data for these, whatever their size field says
	default:
		if hdr.Size < 0 {
			return fmt.Errorf("%w: negative size %d", ErrUnsafe, hdr.Size)
		}
		cost += hdr.Size
	}
	if cost > x.opts.MaxBytes-x.used {
		return fmt.Errorf("%w: entry declares %s, which takes the layer past its limit of %s",
			ErrTooLarge, units.BytesSize(float64(hdr.Size)), units.BytesSize(float64(x.opts.MaxBytes)))
	}
	x.used += cost
	return nil
}

// writeData copies size bytes of r into f, leaving every all-zero block as a hole: sparse tar
// entries and zero-filled regions then take no space on the host.
func (x *extractor) writeData(f *os.File, r io.Reader, size int64) error {
	if x.buf == nil {
		x.buf = make([]byte, bufSize)
	}
	for off := int64(0); off < size; {
		n, err := io.ReadFull(r, x.buf[:min(int64(len(x.buf)), size-off)])
		if err != nil {
			return fmt.Errorf("read data: %w", err)
		}
		chunk := x.buf[:n]
		for i := 0; i < n; {
			start := i
			for i < n && !isZero(chunk[i:min(i+holeBlock, n)]) {
				i += holeBlock
			}
			if i > start {
				if _, err := f.WriteAt(chunk[start:min(i, n)], off+int64(start)); err != nil {
					return err
				}
			}
			for i < n && isZero(chunk[i:min(i+holeBlock, n)]) {
				i += holeBlock
			}
		}
		off += int64(n)
	}
	// Trailing zeros were skipped: the size comes from the truncate.
	return f.Truncate(size)
}

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
