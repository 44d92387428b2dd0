// Package sniff tells image formats apart by their first bytes.
//
// A raw disk has no magic number of its own, so it is recognised by what a usable disk starts
// with: a partition table (MBR, GPT) or a filesystem superblock (see raw.go). Anything else is
// refused, as the original refused what it could not detect; callers also require a raw image's
// size to be a whole number of 512-byte sectors (see RawSizeOK).
package sniff

import (
	"bytes"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Format is what the head of an input looks like.
type Format string

const (
	Qcow2 Format = "qcow2"
	Raw   Format = "raw"
	Tar   Format = "tar"
	Gzip  Format = "gzip"
)

// HeadSize is how many leading bytes Detect wants to see: up to btrfs' superblock at 64 KiB.
const HeadSize = 68 << 10

// SectorSize is the unit a raw disk image's size must be a multiple of.
const SectorSize = 512

var refused = []struct {
	magic []byte
	what  string
	fix   string
}{
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0}, "xz-compressed", "decompress it first (xz -d)"},
	{[]byte("BZh"), "bzip2-compressed", "decompress it first (bunzip2)"},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, "zstd-compressed", "decompress it first (zstd -d)"},
	{[]byte("PK\x03\x04"), "a zip archive", "unpack it first"},
	{[]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c}, "a 7z archive", "unpack it first"},
	{[]byte("KDMV"), "a VMDK disk", "convert it with qemu-img convert -O qcow2"},
	{[]byte("vhdxfile"), "a VHDX disk", "convert it with qemu-img convert -O qcow2"},
	{[]byte("conectix"), "a VHD disk", "convert it with qemu-img convert -O qcow2"},
}

// Detect classifies head, the first HeadSize bytes (or all of a shorter input). Gzip is reported
// as such; callers unwrap it and detect again. Recognised formats cocoon cannot use, and text,
// are errors that say what the input is and what to do.
func Detect(head []byte) (Format, error) {
	switch {
	case len(head) < 4:
		return "", fmt.Errorf("input is only %d bytes: too small to be a disk image or image tar", len(head))
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return Qcow2, nil
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return Gzip, nil
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return Tar, nil
	}
	for _, r := range refused {
		if bytes.HasPrefix(head, r.magic) {
			return "", fmt.Errorf("input is %s: %s", r.what, r.fix)
		}
	}
	if looksLikeText(head) {
		return "", fmt.Errorf("input looks like a text file (starts with %q): expected a qcow2 or raw disk image or an image tar", firstLine(head))
	}
	if rawKind(head) != "" {
		return Raw, nil
	}
	return "", errors.New("cannot detect file type: not qcow2, not an image tar, and no partition table (MBR, GPT) or filesystem (ext4, xfs, btrfs, vfat, iso9660…) that a raw disk would start with")
}

// RawSizeOK reports whether size fits a raw disk image: non-empty whole 512-byte sectors.
func RawSizeOK(size int64) bool { return size > 0 && size%SectorSize == 0 }

// Disk images start with a boot sector, a partition table or a filesystem superblock, all of which
// contain NUL bytes within 512 bytes; text (HTML error pages, READMEs, scripts) does not.
func looksLikeText(head []byte) bool {
	if bytes.IndexByte(head, 0) >= 0 {
		return false
	}
	// A multi-byte rune cut off at the end of head is still text.
	for i := 0; i < 3 && !utf8.Valid(head) && len(head) > 0; i++ {
		head = head[:len(head)-1]
	}
	return utf8.Valid(head)
}

func firstLine(head []byte) string {
	if i := bytes.IndexAny(head, "\r\n"); i >= 0 {
		head = head[:i]
	}
	if len(head) > 40 {
		head = head[:40]
	}
	return string(head)
}
