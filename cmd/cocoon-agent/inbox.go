package main

import (
	"sync"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// inbox holds a session's stdin between the stream's reader and the pump that writes it to
// the command. The reader never waits on it for a v2 client: the client's window
// (proto.WindowSize) bounds what can be queued.
type inbox struct {
	mu     sync.Mutex
	bufs   [][]byte
	size   int  // bytes queued and being written
	closed bool // stdin_close arrived
	wake   chan struct{}
}

func (q *inbox) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// put queues data unless that would exceed the window (ok=false).
func (q *inbox) put(data []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.size+len(data) > proto.WindowSize {
		return false
	}
	q.bufs = append(q.bufs, data)
	q.size += len(data)
	q.signal()
	return true
}

// putWait queues data, first waiting while a window's worth is queued (clients without flow
// control) or until done.
func (q *inbox) putWait(data []byte, done <-chan struct{}) {
	for {
		q.mu.Lock()
		if q.size < proto.WindowSize {
			q.bufs = append(q.bufs, data)
			q.size += len(data)
			q.signal()
			q.mu.Unlock()
			return
		}
		wake := q.wake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-done:
			return
		}
	}
}

func (q *inbox) close() {
	q.mu.Lock()
	q.closed = true
	q.signal()
	q.mu.Unlock()
}

// take waits for the next data; ok=false after stdin_close (once the queue is empty) or done.
func (q *inbox) take(done <-chan struct{}) ([]byte, bool) {
	for {
		q.mu.Lock()
		if len(q.bufs) > 0 {
			data := q.bufs[0]
			q.bufs[0] = nil
			q.bufs = q.bufs[1:]
			q.mu.Unlock()
			return data, true
		}
		closed, wake := q.closed, q.wake
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-wake:
		case <-done:
			return nil, false
		}
	}
}

// taken frees the room of data take returned, once it was written.
func (q *inbox) taken(n int) {
	q.mu.Lock()
	q.size -= n
	q.signal()
	q.mu.Unlock()
}
