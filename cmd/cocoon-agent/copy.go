package main

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/agent/tarx"
)

// copyOut streams Path as a tar (top entry: its base name) on stdout frames.
func copyOut(s *session, f *proto.Frame) {
	s.send(&proto.Frame{Type: proto.TypeStarted})
	// Buffered: a tar's many small writes (headers, padding) go out as full frames.
	var bw interface {
		io.Writer
		Flush() error
	} = bufio.NewWriterSize(s.output(proto.TypeStdout), proto.GuestChunk)
	if s.v2 {
		bw = s.newOutputWriter(proto.TypeStdout)
	}
	_, err := tarx.Pack(bw, f.Path)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		s.fail(err.Error())
		return
	}
	s.finish(0)
}

// copyIn extracts the tar arriving on stdin frames at Path (docker cp's rule; Name, when
// given, is the stream's top entry).
func copyIn(s *session, f *proto.Frame) {
	pr, pw := io.Pipe()
	s.setHooks(func() { pr.CloseWithError(io.ErrClosedPipe) }, nil, nil)
	go s.pumpStdin(pw, func() { pw.Close() })
	s.send(&proto.Frame{Type: proto.TypeStarted})
	err := tarx.Extract(s.ctx(), pr, f.Path, f.Name, false)
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the pump if the extraction stopped early
	if err != nil {
		s.fail(err.Error())
		return
	}
	s.finish(0)
}

// connect tunnels stdin/stdout frames to a TCP connection to 127.0.0.1:Port.
func connect(s *session, f *proto.Frame) {
	if f.Port < 1 || f.Port > 65535 {
		s.fail("connect: bad port " + strconv.Itoa(f.Port))
		return
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.Port)), 10*time.Second)
	if err != nil {
		s.fail(err.Error())
		return
	}
	conn := c.(*net.TCPConn)
	s.setHooks(func() { conn.Close() }, nil, nil)
	s.send(&proto.Frame{Type: proto.TypeStarted})
	go s.pumpStdin(conn, func() { _ = conn.CloseWrite() })
	s.copyOut(proto.TypeStdout, conn)
	s.finish(0)
	conn.Close()
}
