package proto

import (
	"errors"
	"sync"
)

// Version 2 flow control. Every session has a window of WindowSize bytes per direction: a
// sender (the client for stdin, the agent for stdout+stderr) may have at most that much data
// sent and not yet credited, and the receiver returns credit ("credit" frames, Bytes) as its
// consumer (the command's stdin, the host's stdout) takes the data. So no reader of a stream
// ever waits for one session's consumer: a command that never reads its stdin, or a host
// client that stops reading output, stalls only its own sender, and control frames (signal,
// credit, exit) and end-of-stream keep flowing.
const (
	WindowSize = 1 << 20
	// creditBatch: credit goes back in pieces of at least this much, not per frame.
	creditBatch = WindowSize / 4
)

// ErrSessionEnded is returned by Window.Acquire once the session is over.
var ErrSessionEnded = errors.New("session ended")

// Window is a sender's credit.
type Window struct {
	mu    sync.Mutex
	avail int
	wake  chan struct{}
	done  <-chan struct{}
}

// NewWindow returns a full window; Acquire fails once done is closed.
func NewWindow(done <-chan struct{}) *Window {
	return &Window{avail: WindowSize, wake: make(chan struct{}), done: done}
}

// Acquire waits for credit and takes up to n bytes of it.
func (w *Window) Acquire(n int) (int, error) {
	for {
		w.mu.Lock()
		if w.avail > 0 {
			n = min(n, w.avail)
			w.avail -= n
			w.mu.Unlock()
			return n, nil
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-wake:
		case <-w.done:
			return 0, ErrSessionEnded
		}
	}
}

// Release returns credit the receiver granted (a credit frame's Bytes).
func (w *Window) Release(n int) {
	if n <= 0 {
		return
	}
	w.mu.Lock()
	w.avail = min(w.avail+n, WindowSize) // a confused peer cannot inflate the window
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// Credit counts what a receiver's consumer took and sends it back in batches. One goroutine
// uses it.
type Credit struct {
	W       Sender
	ID      string
	pending int
}

// Consumed records n bytes taken by the consumer.
func (c *Credit) Consumed(n int) error {
	c.pending += n
	if c.pending < creditBatch {
		return nil
	}
	n, c.pending = c.pending, 0
	return c.W.Send(&Frame{Type: TypeCredit, ID: c.ID, Bytes: n})
}
