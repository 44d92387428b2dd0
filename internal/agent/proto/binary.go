package proto

import (
	"bytes"
	"errors"
)

// Version 2 data frames: a peer that announced v2 may send stdin/stdout/stderr data as a line
// that is not JSON, so neither side pays for base64 and JSON (the guest side often runs under
// TCG, where that was most of a transfer's cost) and a quarter fewer bytes cross the port:
//
//	0x01 <kind: 'i' stdin, 'o' stdout, 'e' stderr> <id> ' ' <escaped data> '\n'
//
// The data is escaped so that the frame stays one line: '\n' becomes binEsc 'n' and binEsc
// becomes binEsc 'e'. Staying line-delimited keeps the property the virtio-serial ports rely
// on: a frame cut off by a vanished client spoils one line, never the next client's frames (a
// length-prefixed payload would swallow them).
const (
	binMark = 0x01
	binEsc  = 0xFE // rare in text and in runs of zeros
)

var binKinds = map[string]byte{TypeStdin: 'i', TypeStdout: 'o', TypeStderr: 'e'}

func binType(k byte) string {
	switch k {
	case 'i':
		return TypeStdin
	case 'o':
		return TypeStdout
	case 'e':
		return TypeStderr
	}
	return ""
}

// appendBinaryFrame encodes a data frame in the v2 form; ok=false when f is not one.
func appendBinaryFrame(buf []byte, f *Frame) ([]byte, bool) {
	kind, ok := binKinds[f.Type]
	if !ok || !plainID(f.ID) || len(f.Data) == 0 {
		return buf, false
	}
	buf = append(buf, binMark, kind)
	buf = append(buf, f.ID...)
	buf = append(buf, ' ')
	buf = appendEscaped(buf, f.Data)
	return append(buf, '\n'), true
}

// appendEscaped escapes p with bytes.IndexByte jumps (a byte loop is slow under TCG).
func appendEscaped(buf, p []byte) []byte {
	nl, esc := bytes.IndexByte(p, '\n'), bytes.IndexByte(p, binEsc)
	for {
		i := nl
		if i < 0 || (esc >= 0 && esc < i) {
			i = esc
		}
		if i < 0 {
			return append(buf, p...)
		}
		buf = append(buf, p[:i]...)
		if p[i] == '\n' {
			buf = append(buf, binEsc, 'n')
		} else {
			buf = append(buf, binEsc, 'e')
		}
		p = p[i+1:]
		if nl -= i + 1; nl < 0 {
			nl = bytes.IndexByte(p, '\n')
		}
		if esc -= i + 1; esc < 0 {
			esc = bytes.IndexByte(p, binEsc)
		}
	}
}

var errBadEscape = errors.New("bad escape in a binary data frame")

// unescape decodes an appendEscaped payload into a new slice.
func unescape(p []byte) ([]byte, error) {
	out := make([]byte, 0, len(p))
	for {
		i := bytes.IndexByte(p, binEsc)
		if i < 0 {
			return append(out, p...), nil
		}
		out = append(out, p[:i]...)
		if i+1 >= len(p) {
			return nil, errBadEscape
		}
		switch p[i+1] {
		case 'n':
			out = append(out, '\n')
		case 'e':
			out = append(out, binEsc)
		default:
			return nil, errBadEscape
		}
		p = p[i+2:]
	}
}

// parseBinaryFrame decodes a v2 data line (without its newline); ok=false for anything else.
func parseBinaryFrame(line []byte) (*Frame, bool) {
	if len(line) < 3 || line[0] != binMark {
		return nil, false
	}
	typ := binType(line[1])
	sp := bytes.IndexByte(line[2:], ' ')
	if typ == "" || sp < 0 || !plainID(string(line[2:2+sp])) {
		return nil, false
	}
	data, err := unescape(line[3+sp:])
	if err != nil || len(data) == 0 {
		return nil, false
	}
	return &Frame{Type: typ, ID: string(line[2 : 2+sp]), Data: data}, true
}
