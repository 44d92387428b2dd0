// Package client runs agent sessions (exec, copy, TCP tunnels) from the host over any stream
// transport a hypervisor backend supplies.
package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// Dialer opens one stream to the guest agent (hypervisor.AgentChannel.DialAgent bound to a VM).
type Dialer func(ctx context.Context) (io.ReadWriteCloser, error)

// StartTimeout bounds the wait for the agent's first answer; a guest that has the channel open
// but does not answer within it is treated as having no working agent.
const StartTimeout = 30 * time.Second

// ErrLost is returned when the stream ends before the session did.
var ErrLost = errors.New("connection to the guest agent lost (the VM stopped or the agent died)")

// Session is one running request.
type Session struct {
	conn   io.ReadWriteCloser
	w      *proto.Writer
	id     string
	frames queue
	first  *proto.Frame // a frame Start read that Wait must see first
	closed sync.Once

	// Protocol v2 (the agent said so in "started"): stdin is sent within the window the
	// agent grants, output credit goes back as Wait writes it out, data frames are binary.
	v2     bool
	stdin  *proto.Window
	credit proto.Credit
	done   chan struct{} // closed by Close or when the stream ends: ends waits for credit
	ended  sync.Once
}

// Start dials, sends req and waits for the agent to accept it.
func Start(ctx context.Context, dial Dialer, req proto.Frame) (*Session, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	s := &Session{conn: conn, w: proto.NewWriter(conn), id: rand.Text()[:16], done: make(chan struct{})}
	s.frames.wake = make(chan struct{})
	s.stdin = proto.NewWindow(s.done)
	s.credit = proto.Credit{W: s.w, ID: s.id}
	req.ID, req.V = s.id, proto.Version
	go s.read()
	if sh, ok := conn.(interface{ SharedStream() bool }); ok && sh.SharedStream() {
		// A bare newline ends any partial line a previous client of the port left behind
		// (only on reused streams: a per-connection agent may not expect blank lines).
		err = s.w.WriteRaw([]byte("\n"))
	}
	if err == nil {
		err = s.w.Send(&req)
	}
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("send request to the guest agent: %w", err)
	}
	t := time.NewTimer(StartTimeout)
	defer t.Stop()
	f, err := s.frames.pop(ctx, t.C)
	switch {
	case errors.Is(err, errTimeout):
		s.Close()
		return nil, fmt.Errorf("the guest agent did not answer within %s", StartTimeout)
	case err != nil:
		s.Close()
		return nil, err
	case f.Type == proto.TypeError:
		s.Close()
		return nil, errors.New(f.Message)
	case f.Type == proto.TypeStarted:
		s.v2 = f.V >= 2
	default:
		s.first = f // a command that never started still reports stderr and exit
	}
	if !s.v2 {
		s.frames.bound(s.done)
	}
	return s, nil
}

// read takes frames off the stream as they come and never waits for their consumer, so
// credit, exit and error frames are seen while output waits to be written out (the agent's
// window bounds what queues up).
func (s *Session) read() {
	r := proto.NewReader(s.conn)
	r.OwnID = s.id
	for {
		f, err := r.Next()
		if err != nil {
			s.frames.end(err)
			s.ended.Do(func() { close(s.done) })
			return
		}
		// Frames without an id come from agents that predate sessions ids (one stream per
		// connection, so they are ours).
		if f == nil || (f.ID != "" && f.ID != s.id) {
			continue
		}
		if f.Type == proto.TypeCredit {
			s.stdin.Release(f.Bytes)
			continue
		}
		s.frames.push(f)
	}
}

// Close ends the session; the agent kills what it started.
func (s *Session) Close() {
	s.closed.Do(func() {
		s.ended.Do(func() { close(s.done) })
		s.conn.Close()
	})
}

// Resize tells the guest terminal its new size.
func (s *Session) Resize(rows, cols uint16) error {
	return s.w.Send(&proto.Frame{Type: proto.TypeResize, ID: s.id, Rows: rows, Cols: cols})
}

// Signal sends a signal (INT, TERM, KILL, …) to the command's process group.
func (s *Session) Signal(name string) error {
	return s.w.Send(&proto.Frame{Type: proto.TypeSignal, ID: s.id, Signal: name})
}

// Stdin returns a writer that forwards to the command's stdin.
func (s *Session) Stdin() io.Writer {
	if s.v2 {
		return proto.StreamWriter{W: s.w, Type: proto.TypeStdin, ID: s.id, Binary: true, Window: s.stdin}
	}
	return proto.StreamWriter{W: s.w, Type: proto.TypeStdin, ID: s.id}
}

// CloseStdin sends end-of-file on the command's stdin.
func (s *Session) CloseStdin() error {
	return s.w.Send(&proto.Frame{Type: proto.TypeStdinClose, ID: s.id})
}

// SendStdin copies r to the command's stdin, then closes it. Run it in its own goroutine.
func (s *Session) SendStdin(r io.Reader) error {
	if r != nil {
		// A read per frame (a file's WriteTo would ignore the buffer's size).
		if _, err := io.CopyBuffer(s.Stdin(), struct{ io.Reader }{r}, make([]byte, proto.Chunk)); err != nil {
			return err
		}
	}
	return s.CloseStdin()
}

// Wait copies output until the session ends and returns the exit code. When ctx ends first,
// the command is killed and ctx's error returned.
func (s *Session) Wait(ctx context.Context, stdout, stderr io.Writer) (int, error) {
	for {
		f, err := s.next(ctx)
		if err != nil {
			return -1, err
		}
		switch f.Type {
		case proto.TypeStdout, proto.TypeStderr:
			w := stdout
			if f.Type == proto.TypeStderr {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(f.Data); err != nil {
					_ = s.Signal("KILL")
					return -1, fmt.Errorf("write %s: %w", f.Type, err)
				}
			}
			if s.v2 {
				// Written out (or discarded): the agent may send that much more. A failed send
				// means the stream is gone, which the next frame reports.
				_ = s.credit.Consumed(len(f.Data))
			}
		case proto.TypeExit:
			if f.ExitCode == nil {
				return -1, errors.New("the guest agent sent an exit frame without exit_code")
			}
			return *f.ExitCode, nil
		case proto.TypeError:
			return -1, errors.New(f.Message)
		}
	}
}

func (s *Session) next(ctx context.Context) (*proto.Frame, error) {
	if f := s.first; f != nil {
		s.first = nil
		return f, nil
	}
	f, err := s.frames.pop(ctx, nil)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		_ = s.Signal("KILL")
	}
	return f, err
}
