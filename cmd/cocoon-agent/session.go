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

// session is one request (exec, copy, connect) being served.
type session struct {
	id     string
	w      *proto.Writer
	v2     bool          // the client speaks protocol v2: flow control, binary data frames
	out    *proto.Window // v2: output credit the host granted
	dead   atomic.Bool
	in     inbox
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
	if f.Type == proto.TypeStarted && s.v2 {
		f.V = proto.Version // tells the client it may use v2 frames
	}
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

// output returns the writer that sends what the session's command or socket produces as
// frames of type typ (flow-controlled and binary with a v2 client).
func (s *session) output(typ string) io.Writer {
	return proto.StreamWriter{W: sessionWriter{s}, Type: typ, ID: s.id, Binary: s.v2, Window: s.out}
}

// pumpStdin copies queued stdin data to w until stdin_close or the session ends, then calls
// closeFn. With a v2 client it returns credit as w takes the data.
func (s *session) pumpStdin(w io.Writer, closeFn func()) {
	defer closeFn()
	credit := proto.Credit{W: sessionWriter{s}, ID: s.id}
	failed := false
	for {
		data, ok := s.in.take(s.done)
		if !ok {
			return
		}
		if !failed {
			// After a failed write (process exited, socket closed) the rest is dropped, still
			// credited so the client is not left waiting before the exit frame comes.
			_, err := w.Write(data)
			failed = err != nil
		}
		s.in.taken(len(data))
		if s.v2 {
			_ = credit.Consumed(len(data))
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
			if cur == nil {
				<-next
				continue
			}
			// The session ends when the port stays disconnected hostGoneAfter.
			t := time.NewTimer(hostGoneAfter - time.Since(gone))
			select {
			case <-next:
			case <-t.C:
			}
			t.Stop()
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
			cur = newSession(f, pw)
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
		if !s.v2 {
			// Without flow control the stream's reader waits for room (on a vsock connection
			// of its own, the ecosystem's way; its back-pressure reaches the client).
			s.in.putWait(f.Data, s.done)
			return
		}
		if !s.in.put(f.Data) {
			// The client sent beyond its window: never wait here (the stream's other frames
			// would wait behind it), end the session.
			s.fail("stdin exceeds the flow-control window")
			s.abort()
		}
	case proto.TypeStdinClose:
		s.in.close()
	case proto.TypeCredit:
		if s.out != nil {
			s.out.Release(f.Bytes)
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

func newSession(f *proto.Frame, w *proto.Writer) *session {
	s := &session{id: f.ID, w: w, v2: f.V >= 2, done: make(chan struct{})}
	s.in.wake = make(chan struct{})
	if s.v2 {
		s.out = proto.NewWindow(s.done)
	}
	return s
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
