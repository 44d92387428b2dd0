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

func TestBinaryFramesRoundTrip(t *testing.T) {
	data := make([]byte, 3*Chunk+17)
	for i := range data {
		data[i] = byte(i * 7) // every byte value, newlines and escapes included
	}
	data[0], data[len(data)-1] = '\n', binEsc
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if _, err := (StreamWriter{W: w, Type: TypeStdin, ID: "s1", Binary: true}).Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(&Frame{Type: TypeStdinClose, ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(buf.Bytes(), []byte{'\n'}) != 5 || bytes.Contains(buf.Bytes(), []byte(`"data"`)) {
		t.Fatalf("want 4 binary lines and a JSON one, got %d lines", bytes.Count(buf.Bytes(), []byte{'\n'}))
	}
	r := NewReader(&buf)
	var got []byte
	for {
		f, err := r.Next()
		if err != nil || f == nil {
			t.Fatalf("frame %+v %v", f, err)
		}
		if f.Type == TypeStdinClose {
			break
		}
		if f.Type != TypeStdin || f.ID != "s1" {
			t.Fatalf("frame %+v", f)
		}
		got = append(got, f.Data...)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("binary frames do not round-trip")
	}
	// A cut or corrupt binary line is skipped, like any line that is not a frame.
	for _, line := range []string{"\x01o", "\x01oid", "\x01xid data", "\x01oid \xfe", "\x01oid a\xfeqb", "\x01oi\"d x"} {
		if f, err := NewReader(strings.NewReader(line + "\n")).Next(); f != nil || err != nil {
			t.Fatalf("%q: %+v %v", line, f, err)
		}
	}
}

func TestWindowAndCredit(t *testing.T) {
	done := make(chan struct{})
	w := NewWindow(done)
	if n, err := w.Acquire(WindowSize + 5); err != nil || n != WindowSize {
		t.Fatalf("acquire all: %d %v", n, err)
	}
	got := make(chan int)
	go func() {
		n, _ := w.Acquire(10)
		got <- n
	}()
	w.Release(4)
	if n := <-got; n != 4 {
		t.Fatalf("after a credit of 4: %d", n)
	}
	go func() {
		_, err := w.Acquire(1)
		got <- map[bool]int{true: 1}[errors.Is(err, ErrSessionEnded)]
	}()
	close(done)
	if <-got != 1 {
		t.Fatal("Acquire did not end with the session")
	}
	w.Release(10 * WindowSize)
	if w.avail != WindowSize {
		t.Fatalf("window inflated to %d", w.avail)
	}

	var buf bytes.Buffer
	c := Credit{W: NewWriter(&buf), ID: "x"}
	for range creditBatch/1000 + 1 {
		_ = c.Consumed(1000)
	}
	f, err := NewReader(&buf).Next()
	if err != nil || f.Type != TypeCredit || f.Bytes != (creditBatch/1000+1)*1000 || f.ID != "x" {
		t.Fatalf("credit frame %+v %v (one for the batch)", f, err)
	}
}

func TestPrefixedOutputFrames(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	// The tail of another session's frame first: its header promises more than follows.
	buf.WriteString("\x02oOTHERSESSION 100000\nhalf of its data\n")
	data := bytes.Repeat([]byte("line\n\x00\xfe"), 5000)
	out := make([]byte, HeaderRoom+len(data))
	copy(out[HeaderRoom:], data)
	if err := w.SendPrefixed(TypeStdout, "mine", out, HeaderRoom); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(&Frame{Type: TypeStderr, ID: "mine", Data: []byte("err\n"), Binary: true}); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(Exit("mine", 0)); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	r.OwnID = "mine"
	var got []*Frame
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f == nil {
			continue
		}
		got = append(got, f)
		if f.Type == TypeExit {
			break
		}
	}
	if len(got) != 3 || got[0].Type != TypeStdout || !bytes.Equal(got[0].Data, data) || got[1].Type != TypeStderr || string(got[1].Data) != "err\n" {
		t.Fatalf("frames: %d, first %s %d bytes", len(got), got[0].Type, len(got[0].Data))
	}
	// Without OwnID (the agent's side) a length is never honoured.
	r = NewReader(strings.NewReader("\x02omine 5\n{\"type\":\"stdin_close\",\"id\":\"x\"}\n"))
	if f, err := r.Next(); f != nil || err != nil {
		t.Fatalf("header: %+v %v", f, err)
	}
	if f, err := r.Next(); err != nil || f == nil || f.Type != TypeStdinClose {
		t.Fatalf("next frame: %+v %v", f, err)
	}
}
