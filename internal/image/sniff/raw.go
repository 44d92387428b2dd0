package sniff

import (
	"bytes"
	"encoding/binary"
)

// signature is a magic string at a fixed offset.
type signature struct {
	what string
	off  int
	want string
}

// signatures are the filesystems and volume formats a raw disk image may start with directly.
// ext2/3/4 and vfat need more than a magic (see rawKind): theirs are two bytes long or text.
var signatures = []signature{
	{"GPT", 512, "EFI PART"},
	{"GPT", 4096, "EFI PART"}, // 4 KiB sectors
	{"xfs", 0, "XFSB"},
	{"btrfs", 0x10040, "_BHRfS_M"},
	{"iso9660", 0x8001, "CD001"},
	{"udf", 0x8001, "BEA01"},
	{"ntfs", 3, "NTFS    "},
	{"exfat", 3, "EXFAT   "},
	{"squashfs", 0, "hsqs"},
	{"erofs", 1024, "\xe2\xe1\xf5\xe0"},
	{"f2fs", 1024, "\x10\x20\xf5\xf2"},
	{"luks", 0, "LUKS\xba\xbe"},
	{"lvm2", 512 + 24, "LVM2 001"},
	{"swap", 4096 - 10, "SWAPSPACE2"},
}

// rawKind names the partition table or filesystem head starts with, or "" when there is none.
func rawKind(head []byte) string {
	at := func(off int, want string) bool {
		return len(head) >= off+len(want) && string(head[off:off+len(want)]) == want
	}
	for _, s := range signatures {
		if at(s.off, s.want) {
			return s.what
		}
	}
	// ext2/3/4: magic 0xEF53 in the superblock at 1024, whose log2(block size / 1024) is at most 6.
	if at(1024+56, "\x53\xef") && len(head) >= 1024+28 && binary.LittleEndian.Uint32(head[1024+24:]) <= 6 {
		return "ext4"
	}
	if !at(510, "\x55\xaa") {
		return ""
	}
	if at(54, "FAT12   ") || at(54, "FAT16   ") || at(54, "FAT     ") || at(82, "FAT32   ") {
		return "vfat"
	}
	if mbr(head) {
		return "MBR"
	}
	return ""
}

// mbr reports whether head holds an MBR partition table: every entry's status byte is valid and
// at least one entry describes a partition.
func mbr(head []byte) bool {
	used := false
	for i := range 4 {
		e := head[446+16*i : 446+16*(i+1)]
		if e[0] != 0 && e[0] != 0x80 {
			return false
		}
		if e[4] != 0 && binary.LittleEndian.Uint32(e[12:]) != 0 {
			used = true
		}
	}
	return used && bytes.Equal(head[510:512], []byte{0x55, 0xaa})
}
