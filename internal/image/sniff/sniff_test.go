package sniff

import (
	"strings"
	"testing"
)

func TestDetect(t *testing.T) {
	tarHead := make([]byte, 512)
	copy(tarHead, "etc/passwd")
	copy(tarHead[257:], "ustar\x0000")
	mbr := make([]byte, 512)
	mbr[0], mbr[510], mbr[511] = 0xeb, 0x55, 0xaa
	ok := map[string]struct {
		head []byte
		want Format
	}{
		"qcow2":       {[]byte("QFI\xfb\x00\x00\x00\x03"), Qcow2},
		"gzip":        {[]byte{0x1f, 0x8b, 8, 0, 0}, Gzip},
		"tar":         {tarHead, Tar},
		"mbr":         {mbr, Raw},
		"zeros":       {make([]byte, 512), Raw},
		"binary+utf8": {append([]byte("hello"), 0, 1), Raw},
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
