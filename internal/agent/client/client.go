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
	frames chan *proto.Frame
	first  *proto.Frame // a frame Start read that Wait must see first
	rerr   error
	closed sync.Once
}

// Start dials, sends req and waits for the agent to accept it.
func Start(ctx context.Context, dial Dialer, req proto.Frame) (*Session, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	s := &Session{conn: conn, w: proto.NewWriter(conn), id: rand.Text()[:16], frames: make(chan *proto.Frame, 64)}
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
	select {
	case f, ok := <-s.frames:
		if !ok {
			s.Close()
			return nil, s.lost()
		}
		if f.Type == proto.TypeError {
			s.Close()
			return nil, errors.New(f.Message)
		}
		if f.Type != proto.TypeStarted {
			s.first = f // a command that never started still reports stderr and exit
		}
		return s, nil
	case <-t.C:
		s.Close()
		return nil, fmt.Errorf("the guest agent did not answer within %s", StartTimeout)
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

func (s *Session) read() {
	defer close(s.frames)
	r := proto.NewReader(s.conn)
	for {
		f, err := r.Next()
		if err != nil {
			s.rerr = err
			return
		}
		// Frames without an id come from agents that predate sessions ids (one stream per
		// connection, so they are ours).
		if f == nil || (f.ID != "" && f.ID != s.id) {
			continue
		}
		s.frames <- f
	}
}

func (s *Session) lost() error {
	if s.rerr != nil && !errors.Is(s.rerr, io.EOF) {
		return fmt.Errorf("%w: %v", ErrLost, s.rerr)
	}
	return ErrLost
}

// Close ends the session; the agent kills what it started.
func (s *Session) Close() { s.closed.Do(func() { s.conn.Close() }) }

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
	return proto.StreamWriter{W: s.w, Type: proto.TypeStdin, ID: s.id}
}

// CloseStdin sends end-of-file on the command's stdin.
func (s *Session) CloseStdin() error {
	return s.w.Send(&proto.Frame{Type: proto.TypeStdinClose, ID: s.id})
}

// SendStdin copies r to the command's stdin, then closes it. Run it in its own goroutine.
func (s *Session) SendStdin(r io.Reader) error {
	if r != nil {
		if _, err := io.Copy(s.Stdin(), r); err != nil {
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
			if w == nil {
				continue
			}
			if _, err := w.Write(f.Data); err != nil {
				_ = s.Signal("KILL")
				return -1, fmt.Errorf("write %s: %w", f.Type, err)
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
	select {
	case f, ok := <-s.frames:
		if !ok {
			return nil, s.lost()
		}
		return f, nil
	case <-ctx.Done():
		_ = s.Signal("KILL")
		return nil, ctx.Err()
	}
}
