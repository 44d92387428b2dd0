package main

import (
	"context"
	"errors"
	"io"
	"log"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// stdinQueue bounds the stdin frames buffered for a session (up to 32 KiB each, so 16 MiB):
// the stream reader only blocks on a process that does not read its stdin once that much is
// queued, so it normally still sees the host go away and ends the session.
const stdinQueue = 512

// session is one request (exec, copy, connect) being served.
type session struct {
	id     string
	w      *proto.Writer
	dead   atomic.Bool
	in     chan []byte // stdin data; nil data = stdin_close
	done   chan struct{}
	once   sync.Once
	mu     sync.Mutex
	resize func(rows, cols uint16)
	signal func(name string)
	kill   func() // ends the session's work at once (host gone, or a new session)
}

func (s *session) send(f *proto.Frame) {
	if s.dead.Load() {
		return
	}
	f.ID = s.id
	if err := s.w.Send(f); err != nil {
		log.Printf("session %s: send %s: %v", s.id, f.Type, err)
	}
}

func (s *session) finish(code int) { s.send(proto.Exit(s.id, code)) }
func (s *session) fail(msg string) { s.send(proto.Error(s.id, msg)) }

// abort ends the session: no more frames go out, its process or socket is killed.
func (s *session) abort() {
	s.once.Do(func() {
		s.dead.Store(true)
		close(s.done)
		s.mu.Lock()
		kill := s.kill
		s.mu.Unlock()
		if kill != nil {
			kill()
		}
	})
}

func (s *session) setHooks(kill func(), resize func(uint16, uint16), signal func(string)) {
	s.mu.Lock()
	s.kill, s.resize, s.signal = kill, resize, signal
	s.mu.Unlock()
	if s.dead.Load() && kill != nil {
		kill() // aborted while starting
	}
}

// pumpStdin copies queued stdin frames to w until stdin_close or the session ends, then
// calls closeFn.
func (s *session) pumpStdin(w io.Writer, closeFn func()) {
	defer closeFn()
	for {
		select {
		case data := <-s.in:
			if data == nil {
				return
			}
			if _, err := w.Write(data); err != nil {
				// The reader is gone (process exited, socket closed): drop the rest.
				for {
					select {
					case d := <-s.in:
						if d == nil {
							return
						}
					case <-s.done:
						return
					}
				}
			}
		case <-s.done:
			return
		}
	}
}

// hostGoneAfter is how long a port must read EOF before its session is ended.
const hostGoneAfter = 2 * time.Second

// serveStream serves sessions on one stream: a virtio-serial port (wake set: forever, EOF
// only means no host client right now) or a vsock connection (wake nil: until EOF).
func serveStream(name string, r io.Reader, w io.Writer, wake *waker) {
	pr, pw := proto.NewReader(r), proto.NewWriter(w)
	var cur *session
	defer func() {
		if cur != nil {
			cur.abort()
		}
	}()
	var gone time.Time // when the port started reading EOF
	for {
		var next <-chan struct{}
		if wake != nil {
			next = wake.wait()
		}
		f, err := pr.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				log.Printf("%s: read: %v", name, err)
			}
			if wake == nil {
				return
			}
			if gone.IsZero() {
				gone = time.Now()
			}
			if cur != nil && time.Since(gone) >= hostGoneAfter {
				cur.abort()
				cur = nil
			}
			<-next
			continue
		}
		gone = time.Time{}
		if f == nil {
			continue
		}
		if f.IsRequest() {
			if cur != nil {
				cur.abort()
			}
			cur = &session{id: f.ID, w: pw, in: make(chan []byte, stdinQueue), done: make(chan struct{})}
			start(cur, f)
			continue
		}
		if cur == nil || f.ID != cur.id {
			continue // a frame of a session that is gone
		}
		cur.control(f)
	}
}

func (s *session) control(f *proto.Frame) {
	s.mu.Lock()
	resize, signal := s.resize, s.signal
	s.mu.Unlock()
	switch f.Type {
	case proto.TypeStdin:
		if len(f.Data) == 0 {
			return
		}
		select {
		case s.in <- f.Data:
		case <-s.done:
		}
	case proto.TypeStdinClose:
		select {
		case s.in <- nil:
		case <-s.done:
		}
	case proto.TypeResize:
		if resize != nil && f.Rows > 0 && f.Cols > 0 {
			resize(f.Rows, f.Cols)
		}
	case proto.TypeSignal:
		if signal != nil {
			signal(f.Signal)
		}
	}
}

func start(s *session, f *proto.Frame) {
	switch f.Type {
	case proto.TypeExec:
		go startExec(s, f)
	case proto.TypeCopyOut:
		go copyOut(s, f)
	case proto.TypeCopyIn:
		go copyIn(s, f)
	case proto.TypeConnect:
		go connect(s, f)
	}
}

// ctx is a context cancelled when the session ends.
func (s *session) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-s.done; cancel() }()
	return ctx
}
