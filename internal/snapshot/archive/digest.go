package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// DigestPrefix names the digest algorithm in its rendered form.
const DigestPrefix = "sha256-sparse:"

// A file digest is SHA-256 over the file's content in a form that does not depend on where
// its holes are: for every non-zero 4 KiB block (holeBlock, aligned to the file start), its
// offset as 8 big-endian bytes and its bytes; then the apparent size as 8 big-endian bytes.
// Two files of one size have the same digest exactly when their contents are equal, yet the
// digest costs only the data: holes are never read (FileDigest) nor hashed (Import).
type digester struct {
	h   hash.Hash
	num [8]byte
}

func newDigester() *digester { return &digester{h: sha256.New()} }

// block adds one non-zero block that starts at off (a multiple of holeBlock).
func (d *digester) block(off int64, b []byte) {
	binary.BigEndian.PutUint64(d.num[:], uint64(off))
	d.h.Write(d.num[:])
	d.h.Write(b)
}

// sum finishes the digest of a file of the given apparent size.
func (d *digester) sum(size int64) string {
	binary.BigEndian.PutUint64(d.num[:], uint64(size))
	d.h.Write(d.num[:])
	return DigestPrefix + hex.EncodeToString(d.h.Sum(nil))
}

// blocks adds buf, which holds file bytes from off (a multiple of holeBlock), block by block,
// skipping blocks of zeros.
func (d *digester) blocks(off int64, buf []byte, zero []byte) {
	for b := 0; b < len(buf); b += holeBlock {
		end := min(b+holeBlock, len(buf))
		if !bytes.Equal(buf[b:end], zero[:end-b]) {
			d.block(off+int64(b), buf[b:end])
		}
	}
}

// FileDigest computes the digest of the regular file at path, reading only its data
// extents (widened to whole blocks), so a large sparse disk costs what it holds.
func FileDigest(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return "", fmt.Errorf("digest: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("digest %s: not a regular file", path)
	}
	size := st.Size()
	exts, err := dataExtents(f, size)
	if err != nil {
		return "", fmt.Errorf("digest %s: %w", path, err)
	}
	d := newDigester()
	buf, zero := make([]byte, copyBufferSize), make([]byte, holeBlock)
	next := int64(0) // everything before next has been hashed
	for _, e := range exts {
		start := max(e.Offset/holeBlock*holeBlock, next)
		end := min((e.Offset+e.Length+holeBlock-1)/holeBlock*holeBlock, size)
		for off := start; off < end; {
			n := int(min(int64(len(buf)), end-off))
			if m, err := f.ReadAt(buf[:n], off); m < n {
				if err == nil || err == io.EOF {
					err = io.ErrUnexpectedEOF // the file shrank while being read
				}
				return "", fmt.Errorf("digest %s: read at %d: %w", path, off, err)
			}
			d.blocks(off, buf[:n], zero)
			off += int64(n)
		}
		next = max(next, end)
	}
	return d.sum(size), nil
}
