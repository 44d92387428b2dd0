package apicheck

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Record is one request a stand-in received, as one line of its request log.
type Record struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Body is the request body compacted; a body that is not JSON is kept as a JSON string.
	Body json.RawMessage `json:"body,omitempty"`
	// Error is the Checker's message when the request did not match the API; empty when valid.
	Error string `json:"error,omitempty"`
}

// NewRecord builds the Record of a request, storing body so it always marshals.
func NewRecord(method, path string, body []byte, checkErr error) Record {
	r := Record{Method: method, Path: path}
	if len(bytes.TrimSpace(body)) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, body) == nil {
			r.Body = buf.Bytes()
		} else {
			r.Body, _ = json.Marshal(string(body)) // a string always marshals
		}
	}
	if checkErr != nil {
		r.Error = checkErr.Error()
	}
	return r
}

// AppendRecord appends r as one JSON line to logPath (created 0644 when missing). Each
// record is one write(2) on an O_APPEND descriptor, so concurrent appends never interleave.
func AppendRecord(logPath string, r Record) error {
	line, err := marshalLine(r)
	if err != nil {
		return fmt.Errorf("encode request record: %w", err)
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open request log: %w", err)
	}
	if _, err := f.Write(line); err != nil {
		f.Close()
		return fmt.Errorf("append to request log %s: %w", logPath, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close request log %s: %w", logPath, err)
	}
	return nil
}

// ReadRecords reads a request log in order. A log that does not exist holds no records
// (the stand-in saw no request); a malformed line is an error naming its number.
func ReadRecords(logPath string) ([]Record, error) {
	data, err := os.ReadFile(logPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read request log: %w", err)
	}
	var recs []Record
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), len(data)+1)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var r Record
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("request log %s line %d: %w", logPath, n, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read request log %s: %w", logPath, err)
	}
	return recs, nil
}

// marshalLine encodes r as JSON plus newline, without HTML escaping so paths stay readable.
func marshalLine(r Record) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
