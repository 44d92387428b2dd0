package proto

import (
	"bytes"
	"encoding/json"
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

// The hand-written data frames are exactly what encoding/json reads and writes.
func TestDataFramesMatchJSON(t *testing.T) {
	for _, f := range []*Frame{
		{Type: TypeStdout, ID: "ABC123", Data: []byte("hello\n\x00\xff")},
		{Type: TypeStdin, Data: []byte{1, 2, 3}},
	} {
		fast, ok := appendDataFrame(nil, f)
		want, _ := json.Marshal(f)
		if !ok || string(fast) != string(want)+"\n" {
			t.Fatalf("fast %q, json %q", fast, want)
		}
		got, ok := parseDataFrame(fast[:len(fast)-1])
		if !ok || got.Type != f.Type || got.ID != f.ID || !bytes.Equal(got.Data, f.Data) {
			t.Fatalf("parse %q: %+v %v", fast, got, ok)
		}
	}
	// Other shapes fall back to encoding/json.
	for _, line := range []string{`{"data":"aGk=","type":"stdin"}`, `{"type":"stdin","id":"a\"b","data":"aGk="}`, `{"type":"exit","id":"a","exit_code":1}`} {
		if _, ok := parseDataFrame([]byte(line)); ok {
			t.Fatalf("fast path took %s", line)
		}
		if f, err := NewReader(strings.NewReader(line + "\n")).Next(); err != nil || f == nil {
			t.Fatalf("reader on %s: %+v %v", line, f, err)
		}
	}
	if _, ok := appendDataFrame(nil, &Frame{Type: TypeStdout, ID: `a"b`, Data: []byte("x")}); ok {
		t.Fatal("fast path took an id that needs escaping")
	}
}
