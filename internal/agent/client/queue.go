package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

var errTimeout = errors.New("timed out")

// queue hands frames from the stream's reader to the session's consumer. With a v2 agent the
// reader never waits (the agent's window bounds the queue); an agent without flow control
// (bounded) is held back by the reader waiting once legacyDepth frames queue up, as a
// connection of its own allows.
type queue struct {
	mu      sync.Mutex
	frames  []*proto.Frame
	err     error // why the stream ended; set once
	wake    chan struct{}
	bounded bool
	done    <-chan struct{} // ends a bounded push's wait
}

const legacyDepth = 64

func (q *queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// bound makes push wait for room (an agent without flow control).
func (q *queue) bound(done <-chan struct{}) {
	q.mu.Lock()
	q.bounded, q.done = true, done
	q.mu.Unlock()
}

func (q *queue) push(f *proto.Frame) {
	q.mu.Lock()
	for q.bounded && len(q.frames) >= legacyDepth {
		wake, done := q.wake, q.done
		q.mu.Unlock()
		select {
		case <-wake:
		case <-done:
			return
		}
		q.mu.Lock()
	}
	q.frames = append(q.frames, f)
	q.signal()
	q.mu.Unlock()
}

// end records that no more frames come.
func (q *queue) end(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = ErrLost
	} else {
		err = fmt.Errorf("%w: %v", ErrLost, err)
	}
	q.mu.Lock()
	q.err = err
	q.signal()
	q.mu.Unlock()
}

// pop returns the next frame; the stream's end (after its frames), cancel's context error or
// errTimeout when timeout fires first.
func (q *queue) pop(ctx context.Context, timeout <-chan time.Time) (*proto.Frame, error) {
	for {
		q.mu.Lock()
		if len(q.frames) > 0 {
			f := q.frames[0]
			q.frames[0] = nil
			q.frames = q.frames[1:]
			if q.bounded {
				q.signal() // room for a waiting push
			}
			q.mu.Unlock()
			return f, nil
		}
		err, wake := q.err, q.wake
		q.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, errTimeout
		}
	}
}
