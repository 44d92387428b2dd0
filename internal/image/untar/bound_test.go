package untar

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// gnuSparse returns a tar (GNU tar's old sparse format, as `tar --sparse` writes) holding one file
// of logical size bytes whose only data is `data` at offset. It is a few KiB whatever size is.
func gnuSparse(name string, size, offset int64, data []byte) []byte {
	blk := make([]byte, 512)
	copy(blk, name)
	num := func(field []byte, v int64) { // octal when it fits, else base-256 like GNU tar
		if v < 1<<(3*(len(field)-1)) {
			copy(field, fmt.Sprintf("%0*o\x00", len(field)-1, v))
			return
		}
		field[0] = 0x80
		binary.BigEndian.PutUint64(field[len(field)-8:], uint64(v))
	}
	num(blk[100:108], 0o644)
	num(blk[108:116], 0)
	num(blk[116:124], 0)
	num(blk[124:136], int64(len(data)))
	num(blk[136:148], 0)
	blk[156] = tar.TypeGNUSparse
	copy(blk[257:], "ustar  \x00")
	num(blk[386:398], offset)           // sparse[0].offset
	num(blk[398:410], int64(len(data))) // sparse[0].numbytes
	num(blk[483:495], size)             // realsize
	copy(blk[148:156], "        ")
	var sum int64
	for _, b := range blk {
		sum += int64(b)
	}
	copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	out := append(blk, data...)
	out = append(out, make([]byte, (512-len(data)%512)%512)...)
	out = append(out, make([]byte, 1024)...) // end of archive
	return append(out, make([]byte, 10240-len(out)%10240)...)
}

func TestExtractRefusesSizeBombs(t *testing.T) {
	needRoot(t)
	var declared bytes.Buffer
	tw := tar.NewWriter(&declared)
	// Only the header: the stream ends long before the 1 TiB it announces.
	if err := tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	var skipped bytes.Buffer
	tw = tar.NewWriter(&skipped)
	// An entry type extraction skips: its data must still be read through, so it counts.
	if err := tw.WriteHeader(&tar.Header{Name: "odd", Typeflag: 'Z', Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	many := make([]*tar.Header, 5)
	for i := range many {
		many[i] = reg(fmt.Sprintf("f%d", i))
	}
	cases := map[string]struct {
		data []byte
		max  int64
	}{
		"sparse 1 TiB in 10 KiB": {gnuSparse("bomb", 1<<40, 1<<40, nil), 0},
		"size field 1 TiB":       {declared.Bytes(), 0},
		"skipped type 1 TiB":     {skipped.Bytes(), 0},
		"too many entries":       {build(t, many...), 4 * (EntryCost + 2)},
		"just over a small cap":  {build(t, &tar.Header{Name: "x", Typeflag: tar.TypeReg, Size: 1}), EntryCost},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if name == "sparse 1 TiB in 10 KiB" && len(c.data) != 10240 {
				t.Fatalf("bomb is %d bytes", len(c.data))
			}
			root, err := extract(t, c.data, Options{Whiteouts: true, MaxBytes: c.max})
			if !errors.Is(err, ErrTooLarge) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v, want one-line ErrTooLarge", err)
			}
			t.Log(err)
			if n := len(ls(root)); n > 5 {
				t.Errorf("root has %d entries: %v", n, ls(root))
			}
			if c.max == 0 {
				for _, f := range []string{"bomb", "big"} {
					if _, err := os.Lstat(filepath.Join(root, f)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s was created: %v", f, err)
					}
				}
			}
		})
	}
	// Exactly at the cap is fine.
	if _, err := extract(t, build(t, reg("f0")), Options{MaxBytes: EntryCost + 2}); err != nil {
		t.Fatalf("entry at the cap refused: %v", err)
	}
}

func TestExtractWritesZerosAsHoles(t *testing.T) {
	needRoot(t)
	const gib = 1 << 30
	zeros := &tar.Header{Name: "zeros", Typeflag: tar.TypeReg, Mode: 0o644, Size: 8 << 20}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(zeros); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, zeros.Size)
	copy(body[3<<20:], "middle") // one data block in 8 MiB of zeros, not aligned to a read chunk
	body[len(body)-1] = 'z'      // and a short last block
	if _, err := tw.Write(body); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		data []byte
		name string
		want []byte
	}{
		"zero-filled regular file": {buf.Bytes(), "zeros", body},
		"GNU sparse file":          {gnuSparse("sparse", gib+4096, gib, []byte("hello")), "sparse", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			root, err := extract(t, c.data, Options{})
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(root, c.name)
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			// Two data blocks at most (st_blocks counts 512-byte units); a few extra for fs metadata.
			if st.Blocks*512 > 4*holeBlock {
				t.Errorf("%s has %d bytes allocated for %d bytes of data", c.name, st.Blocks*512, st.Size)
			}
			if c.want != nil {
				got, err := os.ReadFile(p)
				if err != nil || !bytes.Equal(got, c.want) {
					t.Errorf("content differs (%v)", err)
				}
				return
			}
			if st.Size != gib+4096 {
				t.Errorf("size %d", st.Size)
			}
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got := make([]byte, 8)
			if _, err := f.ReadAt(got, gib-3); err != nil || string(got) != "\x00\x00\x00hello" {
				t.Errorf("data at 1 GiB: %q %v", got, err)
			}
		})
	}
}

func TestExtractRefusesWhiteoutsOfNothing(t *testing.T) {
	needRoot(t)
	for _, name := range []string{".wh.", ".wh..", ".wh...", "dir/.wh..", "dir/.wh..."} {
		t.Run(name, func(t *testing.T) {
			_, err := extract(t, build(t,
				&tar.Header{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
				reg("dir/keep"),
				reg(name),
			), Options{Whiteouts: true})
			if !errors.Is(err, ErrUnsafe) {
				t.Fatalf("err = %v, want ErrUnsafe", err)
			}
		})
	}
}
