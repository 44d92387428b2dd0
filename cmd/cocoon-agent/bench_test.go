package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"testing"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// socketDialer serves each dialled connection like a vsock connection of the agent, over a
// unix socket pair (buffered both ways, as the real transports are).
func socketDialer(b testing.TB) client.Dialer {
	return func(context.Context) (io.ReadWriteCloser, error) {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: b.TempDir() + "/s", Net: "unix"})
		if err != nil {
			return nil, err
		}
		defer l.Close()
		cli, err := net.Dial("unix", l.Addr().String())
		if err != nil {
			return nil, err
		}
		srv, err := l.Accept()
		if err != nil {
			return nil, err
		}
		go func() { defer srv.Close(); serveStream("bench", srv, srv, nil) }()
		return cli, nil
	}
}

func benchExec(b *testing.B, argv []string, stdin io.Reader, stdout io.Writer, size int64) {
	b.SetBytes(size)
	for b.Loop() {
		ctx := context.Background()
		s, err := client.Start(ctx, socketDialer(b), proto.Frame{Type: proto.TypeExec, Argv: argv})
		if err != nil {
			b.Fatal(err)
		}
		if r, ok := stdin.(*bytes.Reader); ok {
			r.Seek(0, io.SeekStart) //nolint:errcheck
		}
		go s.SendStdin(stdin) //nolint:errcheck
		code, err := s.Wait(ctx, stdout, os.Stderr)
		if err != nil || code != 0 {
			b.Fatal(code, err)
		}
		s.Close()
	}
}

func BenchmarkExecStdin(b *testing.B) {
	data := make([]byte, 20<<20)
	benchExec(b, []string{"sh", "-c", "cat >/dev/null"}, bytes.NewReader(data), io.Discard, int64(len(data)))
}

func BenchmarkExecStdout(b *testing.B) {
	benchExec(b, []string{"head", "-c", "20971520", "/dev/zero"}, nil, io.Discard, 20<<20)
}

func BenchmarkCopyOut(b *testing.B) {
	dir := b.TempDir()
	if err := os.WriteFile(dir+"/blob", make([]byte, 20<<20), 0o600); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(20 << 20)
	for b.Loop() {
		ctx := context.Background()
		s, err := client.Start(ctx, socketDialer(b), proto.Frame{Type: proto.TypeCopyOut, Path: dir + "/blob"})
		if err != nil {
			b.Fatal(err)
		}
		_ = s.CloseStdin()
		if code, err := s.Wait(ctx, io.Discard, os.Stderr); err != nil || code != 0 {
			b.Fatal(code, err)
		}
		s.Close()
	}
}
