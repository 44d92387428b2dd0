package relay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

const recordSize = 16

// ErrNoIndex means the log has no timestamp index: it was written before relays kept one.
var ErrNoIndex = errors.New("console log has no timestamp index")

func encodeRecord(offset int64, t time.Time) []byte {
	b := make([]byte, recordSize)
	binary.LittleEndian.PutUint64(b[0:8], uint64(offset))
	binary.LittleEndian.PutUint64(b[8:16], uint64(t.UnixNano()))
	return b
}

// Since returns the offset in log of the first byte logged at or after t (to within 10 ms),
// or the log's size when nothing was. Output logged before the index began (an older run)
// has no time; it is included when t precedes the first recorded time. ErrNoIndex (wrapping
// os.ErrNotExist) when the log has no index.
func Since(log string, t time.Time) (int64, error) {
	f, err := os.Open(IndexPath(log))
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("%s: %w (%w)", log, ErrNoIndex, os.ErrNotExist)
	}
	if err != nil {
		return 0, fmt.Errorf("open console log index: %w", err)
	}
	defer f.Close()
	want := t.UnixNano()
	buf := make([]byte, 4096*recordSize)
	first := true
	for {
		n, err := io.ReadFull(f, buf)
		for i := 0; i+recordSize <= n; i += recordSize {
			off := int64(binary.LittleEndian.Uint64(buf[i : i+8]))
			ts := int64(binary.LittleEndian.Uint64(buf[i+8 : i+16]))
			if ts >= want {
				if first {
					return 0, nil
				}
				return off, nil
			}
			first = false
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("read console log index: %w", err)
		}
	}
	st, err := os.Stat(log)
	if err != nil {
		return 0, fmt.Errorf("console log: %w", err)
	}
	return st.Size(), nil
}

// Wait returns once no relay writes to log (its hypervisor ended and it logged the last
// output), or after timeout with an error. No index means no relay ever ran: nothing to wait for.
func Wait(log string, timeout time.Duration) error {
	f, err := os.Open(IndexPath(log))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open console log index: %w", err)
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("lock console log index: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("console relay of %s still running after %v", log, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
