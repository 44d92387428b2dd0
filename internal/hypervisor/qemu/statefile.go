package qemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// A state file is a fixed-size header followed by QEMU's migration stream. The header holds
// the device layout the stream was saved from (QEMU's stream does not describe it, yet the
// destination must match it device for device) and the stream's length, so a truncated or
// half-written file is refused before QEMU is started.
const (
	stateHeaderSize = 4096
	stateFormat     = "cocoon-qemu-state"
	stateVersion    = 1
	qemuStreamMagic = "QEVM" // QEMU_VM_FILE_MAGIC
)

type stateHeader struct {
	Format      string `json:"format"`
	Version     int    `json:"version"`
	StreamBytes int64  `json:"stream_bytes"`
	Layout      layout `json:"layout"`
}

// encodeStateHeader renders h as one JSON line padded with spaces to the header size.
func encodeStateHeader(h stateHeader) ([]byte, error) {
	data, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(data) >= stateHeaderSize {
		return nil, fmt.Errorf("state header is %d bytes, over the %d-byte limit (too many devices)", len(data), stateHeaderSize)
	}
	buf := bytes.Repeat([]byte{' '}, stateHeaderSize)
	copy(buf, data)
	buf[stateHeaderSize-1] = '\n'
	return buf, nil
}

// openState opens a state file, checks it whole and returns it positioned at the stream.
func openState(path string) (*os.File, stateHeader, error) {
	var h stateHeader
	f, err := os.Open(path)
	if err != nil {
		return nil, h, fmt.Errorf("open snapshot state: %w", err)
	}
	if h, err = readStateHeader(f); err != nil {
		f.Close()
		return nil, h, fmt.Errorf("snapshot state %s: %w", path, err)
	}
	return f, h, nil
}

func readStateHeader(f *os.File) (stateHeader, error) {
	var h stateHeader
	st, err := f.Stat()
	if err != nil {
		return h, err
	}
	block := make([]byte, stateHeaderSize+len(qemuStreamMagic))
	n, err := io.ReadFull(f, block)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return h, err
	}
	if n < stateHeaderSize {
		return h, fmt.Errorf("only %d bytes: not a cocoon QEMU state file", n)
	}
	text := bytes.TrimRight(block[:stateHeaderSize], " \n")
	if len(bytes.Trim(text, "\x00")) == 0 {
		return h, errors.New("no header: the save that wrote it did not finish")
	}
	if err := json.Unmarshal(text, &h); err != nil || h.Format != stateFormat {
		return h, errors.New("not a cocoon QEMU state file (unrecognised header)")
	}
	if h.Version != stateVersion {
		return h, fmt.Errorf("state format version %d, this cocoon reads version %d", h.Version, stateVersion)
	}
	if want := stateHeaderSize + h.StreamBytes; st.Size() != want {
		return h, fmt.Errorf("file is %d bytes, its header says %d: it is truncated or damaged", st.Size(), want)
	}
	if string(block[stateHeaderSize:n]) != qemuStreamMagic {
		return h, errors.New("no QEMU migration stream after the header")
	}
	if err := h.Layout.validate(); err != nil {
		return h, fmt.Errorf("refusing its device layout: %w", err)
	}
	if _, err := f.Seek(stateHeaderSize, io.SeekStart); err != nil {
		return h, err
	}
	return h, nil
}
