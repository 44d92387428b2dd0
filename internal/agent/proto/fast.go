package proto

import (
	"bytes"
	"encoding/base64"
)

// Data frames (stdin/stdout/stderr with an id) carry nearly all the bytes, and the agent runs
// inside the guest, often under TCG emulation, where encoding/json's reflection and per-byte
// scanning dominate a transfer. They are written and read by hand in exactly the form
// json.Marshal gives them ({"type":…,"id":…,"data":…}); anything else goes through
// encoding/json.

func isDataType(t string) bool { return t == TypeStdin || t == TypeStdout || t == TypeStderr }

// plainID: an id that needs no JSON escaping.
func plainID(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// appendDataFrame encodes f if it is a plain data frame.
func appendDataFrame(buf []byte, f *Frame) ([]byte, bool) {
	if !isDataType(f.Type) || !plainID(f.ID) || f.V != 0 || len(f.Data) == 0 {
		return buf, false
	}
	rest := *f
	rest.Type, rest.ID, rest.Data, rest.Binary = "", "", nil, false
	if !rest.empty() {
		return buf, false
	}
	buf = append(buf, `{"type":"`...)
	buf = append(buf, f.Type...)
	if f.ID != "" {
		buf = append(buf, `","id":"`...)
		buf = append(buf, f.ID...)
	}
	buf = append(buf, `","data":"`...)
	buf = base64.StdEncoding.AppendEncode(buf, f.Data)
	buf = append(buf, "\"}\n"...)
	return buf, true
}

func (f *Frame) empty() bool {
	return len(f.Argv) == 0 && len(f.Env) == 0 && f.Dir == "" && f.User == "" && !f.TTY && f.Rows == 0 &&
		f.Cols == 0 && f.Path == "" && f.Name == "" && f.Port == 0 && f.Signal == "" && f.PID == 0 &&
		f.ExitCode == nil && f.Message == "" && f.Bytes == 0
}

// parseDataFrame decodes a line in appendDataFrame's form; ok=false sends it to encoding/json.
func parseDataFrame(line []byte) (*Frame, bool) {
	const pfx = `{"type":"`
	if !bytes.HasPrefix(line, []byte(pfx)) {
		return nil, false
	}
	rest := line[len(pfx):]
	q := bytes.IndexByte(rest, '"')
	if q < 0 || !isDataType(string(rest[:q])) {
		return nil, false
	}
	f := &Frame{Type: string(rest[:q])}
	rest = rest[q:]
	if r, ok := bytes.CutPrefix(rest, []byte(`","id":"`)); ok {
		q = bytes.IndexByte(r, '"')
		if q < 0 || !plainID(string(r[:q])) {
			return nil, false
		}
		f.ID, rest = string(r[:q]), r[q:]
	}
	r, ok := bytes.CutPrefix(rest, []byte(`","data":"`))
	if !ok || !bytes.HasSuffix(r, []byte(`"}`)) {
		return nil, false
	}
	enc := r[:len(r)-2]
	data := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(data, enc)
	if err != nil {
		return nil, false
	}
	f.Data = data[:n]
	return f, true
}
