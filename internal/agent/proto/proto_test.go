package proto

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// chunkReader returns its chunks one per Read, with io.EOF between them, like a virtio-serial
// port between (or spuriously within) host connections.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	s := c.chunks[0]
	if s == "" {
		c.chunks = c.chunks[1:]
		return 0, io.EOF
	}
	n := copy(p, s)
	if c.chunks[0] = s[n:]; n == len(s) {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestReaderKeepsLineAcrossEOF(t *testing.T) {
	r := NewReader(&chunkReader{chunks: []string{`{"type":"ex`, "", `ec","id":"a","argv":["true"]}` + "\n"}})
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("first Next: %v, want EOF", err)
	}
	f, err := r.Next()
	if err != nil || f == nil || f.Type != TypeExec || f.ID != "a" {
		t.Fatalf("after EOF: %+v %v", f, err)
	}
}

func TestReaderSkipsGarbageAndBoundsLines(t *testing.T) {
	long := strings.Repeat("x", MaxLine+10)
	r := NewReader(strings.NewReader("tail of a cut line\n\n" + long + "\n" + `{"type":"stdin","id":"b","data":"aGk="}` + "\n"))
	if f, err := r.Next(); f != nil || err != nil {
		t.Fatalf("garbage line: %+v %v", f, err)
	}
	if f, err := r.Next(); f != nil || err != nil {
		t.Fatalf("blank line: %+v %v", f, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: %v", err)
	}
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("after long line: %v", err)
		}
		if f != nil {
			if f.Type != TypeStdin || string(f.Data) != "hi" {
				t.Fatalf("frame: %+v", f)
			}
			return
		}
	}
}

func TestStreamWriterChunksAndRoundTrips(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	data := bytes.Repeat([]byte{0, 1, 2, '\n'}, Chunk) // 4 chunks of binary data with newlines
	if _, err := (StreamWriter{W: w, Type: TypeStdout, ID: "c"}).Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(Exit("c", 7)); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	var got []byte
	frames := 0
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == TypeExit {
			if *f.ExitCode != 7 || f.ID != "c" {
				t.Fatalf("exit frame %+v", f)
			}
			break
		}
		frames++
		got = append(got, f.Data...)
	}
	if !bytes.Equal(got, data) || frames != 4 {
		t.Fatalf("round trip: %d frames, equal=%v", frames, bytes.Equal(got, data))
	}
}
