package sniff

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func withAt(b []byte, off int, s string) []byte {
	copy(b[off:], s)
	return b
}

// mbrHead is a boot sector with one Linux partition from sector 2048.
func mbrHead() []byte {
	b := make([]byte, 4096)
	withAt(b, 446, "\x80\x00\x00\x00\x83\x00\x00\x00\x00\x08\x00\x00\x00\x00\x01\x00")
	return withAt(b, 510, "\x55\xaa")
}

// randomHead is HeadSize pseudo-random bytes (fixed seed: the test must not flake).
func randomHead() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, HeadSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestDetect(t *testing.T) {
	tarHead := make([]byte, 512)
	copy(tarHead, "etc/passwd")
	copy(tarHead[257:], "ustar\x0000")
	ok := map[string]struct {
		head []byte
		want Format
	}{
		"qcow2":    {[]byte("QFI\xfb\x00\x00\x00\x03"), Qcow2},
		"gzip":     {[]byte{0x1f, 0x8b, 8, 0, 0}, Gzip},
		"tar":      {tarHead, Tar},
		"mbr":      {mbrHead(), Raw},
		"gpt":      {withAt(mbrHead(), 512, "EFI PART"), Raw},
		"ext4":     {withAt(make([]byte, 2048), 1024+56, "\x53\xef"), Raw},
		"xfs":      {withAt(make([]byte, 512), 0, "XFSB"), Raw},
		"btrfs":    {withAt(make([]byte, HeadSize), 0x10040, "_BHRfS_M"), Raw},
		"iso9660":  {withAt(make([]byte, 0x8800), 0x8001, "CD001"), Raw},
		"vfat":     {withAt(withAt(make([]byte, 512), 82, "FAT32   "), 510, "\x55\xaa"), Raw},
		"squashfs": {withAt(make([]byte, 512), 0, "hsqs"), Raw},
	}
	for name, c := range ok {
		if got, err := Detect(c.head); err != nil || got != c.want {
			t.Errorf("%s: Detect = %q, %v; want %q", name, got, err, c.want)
		}
	}
	bad := map[string]struct {
		head []byte
		want string
	}{
		"short":  {[]byte("ab"), "too small"},
		"html":   {[]byte("<!DOCTYPE html>\n<html>"), "text file"},
		"readme": {[]byte("# Title\n\nnaïve text ending mid-rune \xc3"), "text file"},
		"xz":     {[]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}, "xz-compressed"},
		"vmdk":   {[]byte("KDMV\x01\x00\x00\x00"), "VMDK"},
		"zip":    {[]byte("PK\x03\x04\x14\x00"), "zip"},
		"zstd":   {[]byte{0x28, 0xb5, 0x2f, 0xfd, 0}, "zstd"},
		"bzip2":  {[]byte("BZh91AY&SY"), "bzip2"},
		"vhdx":   {[]byte("vhdxfile\x00\x00"), "VHDX"},
		"7z":     {[]byte{'7', 'z', 0xbc, 0xaf, 0x27, 0x1c, 0}, "7z"},
		"vhd":    {[]byte("conectix\x00\x00"), "VHD"},
		"shell":  {[]byte("#!/bin/sh\necho hi\n"), "text file"},
		// Raw disks are recognised by their partition table or filesystem, never by default.
		"zeros":            {make([]byte, HeadSize), "cannot detect file type"},
		"random":           {randomHead(), "cannot detect file type"},
		"binary+utf8":      {append([]byte("hello"), 0, 1), "cannot detect file type"},
		"boot sector only": {withAt(make([]byte, 512), 510, "\x55\xaa"), "cannot detect file type"},
		"ext4 bad block":   {withAt(withAt(make([]byte, 2048), 1024+56, "\x53\xef"), 1024+24, "\x40"), "cannot detect file type"},
		"mbr bad status":   {withAt(mbrHead(), 446, "\x12"), "cannot detect file type"},
	}
	for name, c := range bad {
		if got, err := Detect(c.head); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Detect = %q, %v; want error containing %q", name, got, err, c.want)
		}
	}
	for size, want := range map[int64]bool{0: false, 511: false, 512: true, 4 << 20: true, 4<<20 + 1: false} {
		if RawSizeOK(size) != want {
			t.Errorf("RawSizeOK(%d) != %v", size, want)
		}
	}
}
