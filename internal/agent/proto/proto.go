// Package proto is the wire format between cocoon and its guest agent: line-delimited JSON
// frames, one per line, both ways.
//
// Exec is wire-compatible with the cocoon ecosystem's in-guest exec agent (vsock port 1024, one
// connection per exec): the client sends "exec" (argv, env), then "stdin" (base64 data) and
// "stdin_close"; the agent answers "started" (pid), "stdout"/"stderr" (base64 data) and finally
// "exit" (exit_code) or "error" (message). Version 1 adds, on the same frames: a session id, a
// TTY with "resize" and "signal", file copy ("copy_in"/"copy_out": a tar stream carried as
// stdin/stdout) and TCP tunnels ("connect": the socket's bytes carried as stdin/stdout).
// Version 2 adds, once the agent's "started" frame says "v":2, per-session flow control
// ("credit" frames, window.go) and data frames in a binary form (binary.go).
//
// On a virtio-serial port, which is one byte stream reused by successive host connections, the
// id tells one session's frames from a previous session's late ones: each side ignores frames
// of another id, and the client starts with a bare newline so a line cut off by a vanished
// client cannot swallow its first frame.
package proto

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Version is the protocol version this package speaks (frame field "v").
const Version = 2

// Transport constants.
const (
	// VsockPort is where the agent listens on hybrid vsock (Cloud Hypervisor, Firecracker).
	VsockPort = 1024
	// SerialPortPrefix names the virtio-serial ports the agent serves: prefix + index.
	SerialPortPrefix = "org.cocoonstack.agent."
	// MaxLine bounds one frame; a peer sending longer lines is broken or hostile.
	MaxLine = 1 << 20
	// Chunk is the most payload one stdin/stdout/stderr frame carries.
	Chunk = 32 << 10
	// GuestChunk is what the agent reads at once for one output frame: such a frame (with its
	// header and a little escaping) fits the 32 KiB a guest's virtio-serial write takes at once.
	GuestChunk = Chunk - 256
)

// Frame types.
const (
	TypeExec       = "exec"
	TypeCopyIn     = "copy_in"  // v1: stdin is a tar stream extracted at Path
	TypeCopyOut    = "copy_out" // v1: stdout is a tar stream of Path
	TypeConnect    = "connect"  // v1: stdin/stdout are a TCP connection to 127.0.0.1:Port
	TypeStdin      = "stdin"
	TypeStdinClose = "stdin_close"
	TypeResize     = "resize" // v1
	TypeSignal     = "signal" // v1
	TypeCredit     = "credit" // v2: Bytes more of the window may be sent
	TypeStarted    = "started"
	TypeStdout     = "stdout"
	TypeStderr     = "stderr"
	TypeExit       = "exit"
	TypeError      = "error"
)

// Frame is one line of the protocol. []byte fields travel as standard base64.
type Frame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	V    int    `json:"v,omitempty"`

	Argv []string          `json:"argv,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	Dir  string            `json:"cwd,omitempty"`
	User string            `json:"user,omitempty"`
	TTY  bool              `json:"tty,omitempty"`
	Rows uint16            `json:"rows,omitempty"`
	Cols uint16            `json:"cols,omitempty"`
	Path string            `json:"path,omitempty"`
	Name string            `json:"name,omitempty"` // copy_in: the tar stream's top entry
	Port int               `json:"port,omitempty"`

	Data     []byte `json:"data,omitempty"`
	Signal   string `json:"signal,omitempty"`
	PID      int    `json:"pid,omitempty"`
	ExitCode *int   `json:"exit_code,omitempty"`
	Message  string `json:"message,omitempty"`
	Bytes    int    `json:"bytes,omitempty"`

	// Binary sends a data frame in the v2 binary form (only to a peer that speaks v2).
	Binary bool `json:"-"`
}

// IsRequest says whether the frame opens a session.
func (f *Frame) IsRequest() bool {
	switch f.Type {
	case TypeExec, TypeCopyIn, TypeCopyOut, TypeConnect:
		return true
	}
	return false
}

// ErrLineTooLong is returned for a frame over MaxLine.
var ErrLineTooLong = errors.New("agent frame exceeds 1 MiB")

// Reader reads frames. A line cut by EOF is kept: reading again after EOF continues it (a
// virtio-serial port reads EOF between host clients, and sometimes spuriously within one).
type Reader struct {
	br   *bufio.Reader
	line []byte
	// OwnID, when set, is the session whose length-prefixed output frames are read
	// (prefixed.go); others are skipped line by line.
	OwnID string
}

// NewReader wraps r.
func NewReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 128<<10)} }

// Next returns the next frame. A line that is not a JSON frame (the tail of a line cut off by a
// previous session, a blank line) comes back as a nil frame and a nil error, for the caller
// to skip; io.EOF means the stream ended (for now).
func (r *Reader) Next() (*Frame, error) {
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(r.line)+len(chunk) > MaxLine {
			r.line = r.line[:0] // the line's rest reads as a line that does not parse
			return nil, ErrLineTooLong
		}
		if err == nil && len(r.line) == 0 {
			// The whole line is in the buffer (the usual case): parse it there, one copy less.
			line := chunk[:len(chunk)-1]
			if typ, id, n, ok := parsePrefixedHeader(line); ok {
				if r.OwnID == "" || id != r.OwnID {
					return nil, nil
				}
				return r.readPrefixed(typ, id, n)
			}
			return parseLine(line), nil
		}
		r.line = append(r.line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, err
		}
		line := r.line[:len(r.line)-1]
		r.line = r.line[:0]
		if typ, id, n, ok := parsePrefixedHeader(line); ok {
			if r.OwnID == "" || id != r.OwnID {
				return nil, nil
			}
			return r.readPrefixed(typ, id, n)
		}
		return parseLine(line), nil
	}
}

// parseLine decodes one line; nil when it is not a frame. Data is never kept by reference.
func parseLine(line []byte) *Frame {
	if f, ok := parseBinaryFrame(line); ok {
		return f
	}
	if f, ok := parseDataFrame(line); ok {
		return f
	}
	var f Frame
	if json.Unmarshal(line, &f) != nil || f.Type == "" {
		return nil
	}
	return &f
}

// Writer writes frames; it is safe for concurrent use and writes each frame with one Write, so
// frames never interleave.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte // reused encoding buffer
}

// NewWriter wraps w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Send writes one frame.
func (w *Writer) Send(f *Frame) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var buf []byte
	ok := false
	if f.Binary && (f.Type == TypeStdout || f.Type == TypeStderr) {
		if buf, ok = appendPrefixedHeader(w.buf[:0], f.Type, f.ID, len(f.Data)); ok {
			buf = append(buf, f.Data...)
		}
	}
	if f.Binary && !ok {
		buf, ok = appendBinaryFrame(w.buf[:0], f)
	}
	if !ok {
		buf, ok = appendDataFrame(w.buf[:0], f)
	}
	if !ok {
		data, err := json.Marshal(f)
		if err != nil {
			return fmt.Errorf("encode %s frame: %w", f.Type, err)
		}
		buf = append(append(buf, data...), '\n')
	}
	w.buf = buf
	_, err := w.w.Write(buf)
	return err
}

// WriteRaw writes bytes outside any frame (the client's leading newline).
func (w *Writer) WriteRaw(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(p)
	return err
}

// Exit returns an exit frame.
func Exit(id string, code int) *Frame { return &Frame{Type: TypeExit, ID: id, ExitCode: &code} }

// Error returns an error frame.
func Error(id, msg string) *Frame { return &Frame{Type: TypeError, ID: id, Message: msg} }

// Sender sends frames (a Writer, or something that filters before one).
type Sender interface{ Send(*Frame) error }

// StreamWriter turns writes into frames of one type (stdout, stderr, stdin) in Chunk pieces.
// With a Window (v2) it sends only as much as the receiver granted, waiting for credit.
type StreamWriter struct {
	W        Sender
	Type, ID string
	Binary   bool    // v2 binary frames
	Window   *Window // v2 flow control; nil: none
}

func (s StreamWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), Chunk)
		if s.Window != nil {
			var err error
			if c, err = s.Window.Acquire(c); err != nil {
				return n, err
			}
		}
		if err := s.W.Send(&Frame{Type: s.Type, ID: s.ID, Data: p[:c], Binary: s.Binary}); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}
