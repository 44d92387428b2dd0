package proto

import (
	"bytes"
	"io"
	"strconv"
)

// Version 2 output frames (agent → client only): a header line and the raw bytes,
//
//	0x02 <kind: 'o' stdout, 'e' stderr> <id> ' ' <decimal length> '\n' <length bytes>
//
// so the agent neither scans nor copies what it sends: it reads the command's output into a
// buffer behind room for the header (SendPrefixed) and writes header and data at once. A length
// is only honoured for the reading client's own session id (Reader.OwnID, random per session):
// the tail of another session's frame that a port still delivers is read as lines that are not
// frames, never as a length that would swallow this session's frames. Client → agent data
// stays escaped (binary.go): the agent cannot tell its current session's frames from a vanished
// client's cut-off one.
const prefixedMark = 0x02

// HeaderRoom is the room SendPrefixed needs in front of the data.
const HeaderRoom = 64

// appendPrefixedHeader appends the header of a length-n output frame; ok=false when typ is
// not output or id needs escaping.
func appendPrefixedHeader(buf []byte, typ, id string, n int) ([]byte, bool) {
	if (typ != TypeStdout && typ != TypeStderr) || !plainID(id) || n <= 0 {
		return buf, false
	}
	buf = append(buf, prefixedMark, binKinds[typ])
	buf = append(buf, id...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, int64(n), 10)
	return append(buf, '\n'), true
}

// SendPrefixed sends buf[off:] as one v2 output frame, writing its header into buf[:off]
// (at least HeaderRoom bytes; whatever is there is overwritten). It falls back to an escaped
// frame when the header does not fit.
func (w *Writer) SendPrefixed(typ, id string, buf []byte, off int) error {
	var hdr [HeaderRoom]byte
	h, ok := appendPrefixedHeader(hdr[:0], typ, id, len(buf)-off)
	if !ok || len(h) > off {
		return w.Send(&Frame{Type: typ, ID: id, Data: buf[off:], Binary: true})
	}
	start := off - len(h)
	copy(buf[start:], h)
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err := w.w.Write(buf[start:])
	return err
}

// parsePrefixedHeader parses a header line (without its newline).
func parsePrefixedHeader(line []byte) (typ, id string, n int, ok bool) {
	if len(line) < 5 || line[0] != prefixedMark || (line[1] != 'o' && line[1] != 'e') {
		return "", "", 0, false
	}
	sp := bytes.IndexByte(line[2:], ' ')
	if sp < 0 {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(string(line[3+sp:]))
	if err != nil || n <= 0 || n > MaxLine {
		return "", "", 0, false
	}
	return binType(line[1]), string(line[2 : 2+sp]), n, true
}

// readPrefixed reads the data of a header already parsed.
func (r *Reader) readPrefixed(typ, id string, n int) (*Frame, error) {
	data := make([]byte, n)
	if _, err := io.ReadFull(r.br, data); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return &Frame{Type: typ, ID: id, Data: data}, nil
}
