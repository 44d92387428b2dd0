package cloudinit

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The seed volume is written here, in memory, because no well-kept Go library writes FAT images
// and mkfs.fat + mtools would be two more host dependencies for three small files. It covers only
// what a seed needs: a fixed 1 MiB FAT12 layout, one root directory, VFAT long names, files stored
// in contiguous clusters.
const (
	sectorSize      = 512
	totalSectors    = 2048 // 1 MiB
	reservedSectors = 1
	numFATs         = 2
	fatSectors      = 6 // 2029 entries × 12 bits fit in 3072 bytes
	rootEntries     = 128
	rootSectors     = rootEntries * dirEntrySize / sectorSize
	firstDataSector = reservedSectors + numFATs*fatSectors + rootSectors // 21
	dataClusters    = totalSectors - firstDataSector                     // 2027, far below FAT12's 4085
	dirEntrySize    = 32
	lfnChars        = 13 // UCS-2 characters per long-name entry
	fatEOC          = 0xFFF

	// ImageSize is the size of every seed image.
	ImageSize = totalSectors * sectorSize
	// Capacity is how many bytes of file data fit in the image (one 512-byte cluster per started
	// 512 bytes of each file).
	Capacity = dataClusters * sectorSize
)

type fatFile struct {
	name string
	data []byte
}

// buildFAT12 lays out a FAT12 volume labelled label holding files in its root directory.
func buildFAT12(label string, files []fatFile, now time.Time) ([]byte, error) {
	files = append([]fatFile(nil), files...)
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	needClusters, needEntries := 0, 1 // the volume label entry
	for i, f := range files {
		if err := checkLongName(f.name); err != nil {
			return nil, err
		}
		if i > 0 && strings.EqualFold(files[i-1].name, f.name) {
			return nil, fmt.Errorf("FAT image: file name %q given twice", f.name)
		}
		needClusters += clustersFor(len(f.data))
		needEntries += lfnEntries(f.name) + 1
	}
	if needClusters > dataClusters {
		return nil, fmt.Errorf("cloud-init seed too large: its files need %d bytes on disk but a %d KiB FAT12 seed holds %d: make user-data smaller",
			needClusters*sectorSize, ImageSize>>10, Capacity)
	}
	if needEntries > rootEntries {
		return nil, fmt.Errorf("FAT image: %d files need %d root directory entries, the limit is %d", len(files), needEntries, rootEntries)
	}

	img := make([]byte, ImageSize)
	writeBootSector(img[:sectorSize], label, now)
	fat := make([]byte, fatSectors*sectorSize)
	setFAT12(fat, 0, 0xF00|0xF8) // media byte in entry 0
	setFAT12(fat, 1, fatEOC)
	dir := img[(reservedSectors+numFATs*fatSectors)*sectorSize:][:rootSectors*sectorSize]
	d := dir
	d = d[writeDirEntry(d, padName(label, 11), 0x08, 0, 0, now):]

	used := map[string]bool{}
	cluster := 2
	for _, f := range files {
		short := shortName(f.name, used)
		first := 0
		if n := clustersFor(len(f.data)); n > 0 {
			first = cluster
			for c := cluster; c < cluster+n-1; c++ {
				setFAT12(fat, c, c+1)
			}
			setFAT12(fat, cluster+n-1, fatEOC)
			copy(img[(firstDataSector+cluster-2)*sectorSize:], f.data)
			cluster += n
		}
		d = d[writeLongName(d, f.name, checksum(short)):]
		d = d[writeDirEntry(d, short, 0x20, first, len(f.data), now):]
	}
	for i := range numFATs {
		copy(img[(reservedSectors+i*fatSectors)*sectorSize:], fat)
	}
	return img, nil
}

func clustersFor(size int) int   { return (size + sectorSize - 1) / sectorSize }
func lfnEntries(name string) int { return (len(name) + lfnChars - 1) / lfnChars }

func writeBootSector(b []byte, label string, now time.Time) {
	copy(b, []byte{0xEB, 0x3C, 0x90}) // jump over the BPB, as every FAT boot sector starts
	copy(b[3:], "COCOON  ")
	le := binary.LittleEndian
	le.PutUint16(b[11:], sectorSize)
	b[13] = 1 // sectors per cluster
	le.PutUint16(b[14:], reservedSectors)
	b[16] = numFATs
	le.PutUint16(b[17:], rootEntries)
	le.PutUint16(b[19:], totalSectors)
	b[21] = 0xF8 // media: fixed disk
	le.PutUint16(b[22:], fatSectors)
	le.PutUint16(b[24:], 32) // sectors per track
	le.PutUint16(b[26:], 64) // heads
	b[36] = 0x80             // drive number
	b[38] = 0x29             // extended boot signature: serial, label and type follow
	le.PutUint32(b[39:], uint32(now.Unix()))
	copy(b[43:], padName(label, 11))
	copy(b[54:], "FAT12   ")
	b[510], b[511] = 0x55, 0xAA
}

// setFAT12 stores a 12-bit entry; two entries share three bytes.
func setFAT12(fat []byte, n, v int) {
	off := n * 3 / 2
	if n%2 == 0 {
		fat[off] = byte(v)
		fat[off+1] = fat[off+1]&0xF0 | byte(v>>8)&0x0F
	} else {
		fat[off] = fat[off]&0x0F | byte(v<<4)
		fat[off+1] = byte(v >> 4)
	}
}

func writeDirEntry(b []byte, name string, attr byte, cluster, size int, now time.Time) int {
	copy(b, name)
	b[11] = attr
	date, tm := dosDateTime(now)
	le := binary.LittleEndian
	le.PutUint16(b[14:], tm)   // created
	le.PutUint16(b[16:], date) // created
	le.PutUint16(b[18:], date) // accessed
	le.PutUint16(b[22:], tm)   // modified
	le.PutUint16(b[24:], date) // modified
	le.PutUint16(b[26:], uint16(cluster))
	le.PutUint32(b[28:], uint32(size))
	return dirEntrySize
}

// writeLongName writes the VFAT entries for name, last part first as the format requires; each
// carries the checksum of the 8.3 entry that follows them.
func writeLongName(b []byte, name string, sum byte) int {
	n := lfnEntries(name)
	for i := range n {
		seq := n - i // on disk: highest sequence number first
		e := b[i*dirEntrySize:][:dirEntrySize]
		e[0] = byte(seq)
		if i == 0 {
			e[0] |= 0x40 // last logical entry
		}
		e[11] = 0x0F // attribute marking a long-name entry
		e[13] = sum
		offsets := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for k, off := range offsets {
			pos := (seq-1)*lfnChars + k
			var c uint16
			switch {
			case pos < len(name):
				c = uint16(name[pos])
			case pos == len(name):
				c = 0 // terminator, then 0xFFFF padding
			default:
				c = 0xFFFF
			}
			binary.LittleEndian.PutUint16(e[off:], c)
		}
	}
	return n * dirEntrySize
}

// shortName makes the unique 8.3 alias "BASE~N.EXT" that accompanies every long name (lower-case
// names always need one, since 8.3 names are upper-case).
func shortName(name string, used map[string]bool) string {
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i > 0 {
		base, ext = name[:i], name[i+1:]
	}
	base, ext = shortChars(base), shortChars(ext)
	if base == "" {
		base = "_"
	}
	ext = ext[:min(len(ext), 3)]
	for n := 1; ; n++ {
		tail := "~" + strconv.Itoa(n)
		s := padName(base[:min(len(base), 8-len(tail))]+tail, 8) + padName(ext, 3)
		if !used[s] {
			used[s] = true
			return s
		}
	}
}

// shortChars upper-cases name and drops or replaces what 8.3 names cannot hold.
func shortChars(s string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == ' ' || r == '.':
		case strings.ContainsRune("+,;=[]", r) || r > 0x7E:
			b.WriteByte('_')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func checkLongName(name string) error {
	if name == "" || len(name) > 255 || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r > 0x7E || strings.ContainsRune(`"*/:<>?\|`, r) }) {
		return fmt.Errorf("FAT image: file name %q is not a valid ASCII long file name", name)
	}
	return nil
}

func checksum(short string) byte {
	var sum byte
	for i := range 11 {
		sum = (sum&1)<<7 + sum>>1 + short[i]
	}
	return sum
}

func padName(s string, n int) string { return s + strings.Repeat(" ", n-len(s)) }

func dosDateTime(t time.Time) (date, tm uint16) {
	if t.Year() < 1980 {
		t = time.Date(1980, 1, 1, 0, 0, 0, 0, t.Location())
	}
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	return date, tm
}
