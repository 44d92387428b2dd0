package archive

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// GNU sparse 1.0 writing is hand-written here: archive/tar reads this format but cannot write it
// (it refuses TypeXHeader entries and drops GNU.sparse.* PAX records, golang.org/issue/22735).
// An entry is laid out exactly as GNU tar 1.34 writes it with --sparse --format=pax:
//
//	'x' header "./PaxHeaders/<name>" with records GNU.sparse.major=1, GNU.sparse.minor=0,
//	    GNU.sparse.name=<name>, GNU.sparse.realsize=<apparent size> (+ size when > ustar's 8 GiB)
//	'0' header "./GNUSparseFile.0/<name>" whose size covers map + data
//	sparse map: "<count>\n" then "<offset>\n<length>\n" per extent, NUL-padded to 512 bytes
//	the data of every extent, concatenated, NUL-padded to 512 bytes

const (
	blockSize = 512
	// maxSparseMapBytes is archive/tar's limit on a sparse map (its maxSpecialFileSize); a bigger
	// map is readable by GNU tar but not by Import, so extents are merged until the map fits.
	maxSparseMapBytes = 1 << 20
	// maxUstarSize is the largest size the 11-digit octal ustar field holds; beyond it the
	// size goes into a PAX "size" record.
	maxUstarSize = 1<<33 - 1
)

// extent is one data region of a file: bytes [Offset, Offset+Length).
type extent struct{ Offset, Length int64 }

// dataExtents lists the data regions of f, whose size is size, with SEEK_DATA/SEEK_HOLE.
// A filesystem that cannot report holes yields one extent covering the whole file.
func dataExtents(f *os.File, size int64) ([]extent, error) {
	var exts []extent
	for off := int64(0); off < size; {
		start, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
			return []extent{{0, size}}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("find data at offset %d: %w", off, err)
		}
		if start >= size {
			break
		}
		end, err := f.Seek(start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("find hole after offset %d: %w", start, err)
		}
		end = min(end, size)
		exts = append(exts, extent{start, end - start})
		off = end
	}
	return exts, nil
}

// isSparse reports whether exts leave any hole in a file of the given size.
func isSparse(exts []extent, size int64) bool {
	return size > 0 && !(len(exts) == 1 && exts[0] == extent{0, size})
}

// fitSparseMap merges extents across the fewest, smallest holes that make the encoded map fit
// maxSparseMapBytes. Merged holes are archived as zeros, which gzip shrinks to almost nothing
// and Import turns back into holes.
func fitSparseMap(exts []extent, size int64) []extent {
	if len(encodeSparseMap(exts, size)) <= maxSparseMapBytes {
		return exts
	}
	// gaps[i] is the hole between exts[i] and exts[i+1], smallest first.
	gaps := make([]int, len(exts)-1)
	for i := range gaps {
		gaps[i] = i
	}
	gapLen := func(i int) int64 { return exts[i+1].Offset - exts[i].Offset - exts[i].Length }
	slices.SortStableFunc(gaps, func(a, b int) int { return cmp.Compare(gapLen(a), gapLen(b)) })
	mergeSmallest := func(k int) []extent {
		merge := make([]bool, len(exts))
		for _, g := range gaps[:k] {
			merge[g] = true
		}
		out := []extent{exts[0]}
		for i, e := range exts[1:] {
			if last := &out[len(out)-1]; merge[i] {
				last.Length = e.Offset + e.Length - last.Offset
				continue
			}
			out = append(out, e)
		}
		return out
	}
	// Merging every gap leaves one extent, which always fits; search the fewest merges that fit.
	k := sort.Search(len(gaps), func(k int) bool {
		return len(encodeSparseMap(mergeSmallest(k), size)) <= maxSparseMapBytes
	})
	return mergeSmallest(k)
}

// encodeSparseMap renders the GNU sparse 1.0 map, padded to a whole block. Like GNU tar, a
// file that ends in a hole gets a final zero-length extent at its size, which tells GNU tar to
// extend the file to its full length.
func encodeSparseMap(exts []extent, size int64) []byte {
	if n := len(exts); n == 0 || exts[n-1].Offset+exts[n-1].Length < size {
		exts = append(exts[:n:n], extent{size, 0})
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(exts)) + "\n")
	for _, e := range exts {
		b.WriteString(strconv.FormatInt(e.Offset, 10) + "\n" + strconv.FormatInt(e.Length, 10) + "\n")
	}
	return padBlock([]byte(b.String()))
}

// sparseHeaders returns the PAX header block, its records and the ustar header that introduce a
// sparse entry whose archived payload (map + data) is payloadSize bytes.
func sparseHeaders(name string, realSize, payloadSize int64, mode, mtime int64) []byte {
	records := paxRecord("GNU.sparse.major", "1") +
		paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) +
		paxRecord("GNU.sparse.realsize", strconv.FormatInt(realSize, 10))
	ustarSize := payloadSize
	if payloadSize > maxUstarSize {
		records += paxRecord("size", strconv.FormatInt(payloadSize, 10))
		ustarSize = 0
	}
	out := ustarHeader("./PaxHeaders/"+name, 'x', int64(len(records)), 0o644, mtime)
	out = append(out, padBlock([]byte(records))...)
	return append(out, ustarHeader("./GNUSparseFile.0/"+name, '0', ustarSize, mode, mtime)...)
}

// paxRecord formats one "<len> key=value\n" record, where len counts the whole record.
func paxRecord(key, value string) string {
	body := " " + key + "=" + value + "\n"
	n := len(body) + len(strconv.Itoa(len(body)))
	if len(strconv.Itoa(n)) != len(strconv.Itoa(len(body))) {
		n++ // the length gained a digit by counting itself
	}
	return strconv.Itoa(n) + body
}

// ustarHeader encodes one 512-byte ustar header block owned by uid/gid 0. The name is a
// placeholder for non-sparse-aware readers (the real name is in GNU.sparse.name), so a name too
// long for the 100-byte field is cut rather than spread over the prefix field.
func ustarHeader(name string, typeflag byte, size, mode, mtime int64) []byte {
	b := make([]byte, blockSize)
	copy(b[0:100], name)
	putOctal(b[100:108], mode)
	putOctal(b[108:116], 0)
	putOctal(b[116:124], 0)
	putOctal(b[124:136], size)
	putOctal(b[136:148], mtime)
	b[156] = typeflag
	copy(b[257:265], "ustar\x0000")
	copy(b[148:156], "        ") // the checksum is computed with its own field as spaces
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func putOctal(dst []byte, v int64) {
	copy(dst, fmt.Sprintf("%0*o", len(dst)-1, v))
	dst[len(dst)-1] = 0
}

func padBlock(b []byte) []byte {
	return append(b, make([]byte, blockPadding(int64(len(b))))...)
}

func blockPadding(n int64) int64 { return -n & (blockSize - 1) }
