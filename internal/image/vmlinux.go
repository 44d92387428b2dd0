package image

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"

	"github.com/cocoonstack/cocoon/internal/store"
)

// maxVmlinux bounds a decompressed kernel: a payload that inflates past it is not a kernel
// (or is a bomb), and is not accepted.
const maxVmlinux = 512 << 20

var elfMagic = []byte("\x7fELF")

// payloadFormats are the compressions a bzImage payload may use, tried in this order (spec
// §10.2 names zstd then gzip; Debian's cloud kernels use LZ4, some distributions xz).
var payloadFormats = []struct {
	name  string
	magic []byte
	open  func(io.Reader) (io.Reader, error)
}{
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}, func(r io.Reader) (io.Reader, error) {
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxVmlinux+1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}},
	{"gzip", []byte{0x1f, 0x8b, 0x08}, func(r io.Reader) (io.Reader, error) {
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		z.Multistream(false) // what follows the payload in a bzImage is not another member
		return z, nil
	}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, func(r io.Reader) (io.Reader, error) {
		return xz.NewReader(r)
	}},
	{"lz4", []byte{0x02, 0x21, 0x4c, 0x18}, func(r io.Reader) (io.Reader, error) { // legacy frame, as the kernel builds it
		return lz4.NewReader(r), nil
	}},
}

// ELFKernel returns an uncompressed ELF kernel for kernelPath, which hypervisors such as
// Firecracker need: kernelPath itself when it already is one, else cacheDir/vmlinux, extracted
// from the bzImage payload on first use and reused afterwards.
func ELFKernel(kernelPath, cacheDir string) (string, error) {
	if ok, err := startsWithELF(kernelPath); err != nil {
		return "", err
	} else if ok {
		return kernelPath, nil
	} else if _, err := os.Stat(kernelPath); err != nil {
		return "", fmt.Errorf("kernel: %w", err)
	}
	out := filepath.Join(cacheDir, "vmlinux")
	// Written atomically, so an ELF header means the whole file is there.
	if ok, err := startsWithELF(out); err != nil {
		return "", err
	} else if ok {
		return out, nil
	}
	data, err := os.ReadFile(kernelPath)
	if err != nil {
		return "", fmt.Errorf("read kernel: %w", err)
	}
	vmlinux, err := extractELF(data)
	if err != nil {
		return "", fmt.Errorf("%s: Firecracker requires an uncompressed ELF kernel and none could be extracted: %w", kernelPath, err)
	}
	if err := store.WriteFileAtomic(out, vmlinux, 0o644); err != nil {
		return "", fmt.Errorf("cache extracted kernel: %w", err)
	}
	return out, nil
}

// extractELF finds the compressed payload in a bzImage: for each format in order, from each
// place its magic occurs, the first decompression that yields a whole ELF image wins.
func extractELF(data []byte) ([]byte, error) {
	var tried []string
	for _, pf := range payloadFormats {
		for off := 0; ; {
			i := bytes.Index(data[off:], pf.magic)
			if i < 0 {
				break
			}
			off += i
			out, err := decompress(data[off:], pf.open)
			if err == nil {
				return out, nil
			}
			tried = append(tried, fmt.Sprintf("%s at %d: %v", pf.name, off, err))
			off++
		}
	}
	if len(tried) == 0 {
		return nil, errors.New("no zstd, gzip, xz or lz4 payload found")
	}
	return nil, fmt.Errorf("no payload decompresses to an ELF kernel (%d tried; first: %s)", len(tried), tried[0])
}

// decompress inflates one candidate payload. Whatever follows the payload in the bzImage
// makes most decoders fail at its end, so a read error is not fatal: what counts is that the
// output so far is a whole ELF image (every segment's bytes present).
func decompress(payload []byte, open func(io.Reader) (io.Reader, error)) ([]byte, error) {
	r, err := open(bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	if c, ok := r.(io.Closer); ok {
		defer c.Close()
	}
	var buf bytes.Buffer
	// Peek first: a false magic match usually fails at once and costs nothing more.
	if _, err := io.CopyN(&buf, r, int64(len(elfMagic))); err != nil || !bytes.Equal(buf.Bytes(), elfMagic) {
		return nil, errors.New("does not start with ELF magic")
	}
	n, readErr := io.Copy(&buf, io.LimitReader(r, maxVmlinux))
	if n >= maxVmlinux {
		return nil, fmt.Errorf("larger than %d MiB", maxVmlinux>>20)
	}
	if err := completeELF(buf.Bytes()); err != nil {
		return nil, errors.Join(err, readErr)
	}
	return buf.Bytes(), nil
}

// completeELF checks that data is an ELF image whose loadable segments all lie within it.
func completeELF(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF image: %w", err)
	}
	defer f.Close()
	loads := 0
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD {
			continue
		}
		loads++
		if p.Off+p.Filesz > uint64(len(data)) {
			return fmt.Errorf("ELF image truncated: a segment ends at %d of %d bytes", p.Off+p.Filesz, len(data))
		}
	}
	if loads == 0 {
		return errors.New("ELF image has no loadable segment")
	}
	return nil
}

// startsWithELF reports whether path begins with the ELF magic; a missing file is false.
func startsWithELF(path string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open kernel: %w", err)
	}
	defer f.Close()
	head := make([]byte, len(elfMagic))
	if _, err := io.ReadFull(f, head); err != nil {
		return false, nil // shorter than a header: not an ELF
	}
	return bytes.Equal(head, elfMagic), nil
}
