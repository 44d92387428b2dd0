package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// fakeHybridVsock plays a hybrid vsock socket with an agent of the ecosystem's kind behind
// port 1024: frames without ids, one exec per connection.
func fakeHybridVsock(t *testing.T) string {
	sock := filepath.Join(t.TempDir(), "vsock.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				line, _ := br.ReadString('\n')
				if line != "CONNECT 1024\n" {
					return
				}
				fmt.Fprint(c, "OK 1073741824\n")
				r, w := proto.NewReader(br), proto.NewWriter(c)
				var argv []string
				var stdin []byte
				for {
					f, err := r.Next()
					if err != nil {
						return
					}
					if f == nil {
						continue
					}
					switch f.Type {
					case proto.TypeExec:
						argv = f.Argv
						_ = w.Send(&proto.Frame{Type: proto.TypeStarted, PID: 42})
					case proto.TypeStdin:
						stdin = append(stdin, f.Data...)
					case proto.TypeStdinClose:
						_ = w.Send(&proto.Frame{Type: proto.TypeStdout, Data: []byte(strings.Join(argv, " ") + ":" + string(stdin))})
						_ = w.Send(&proto.Frame{Type: proto.TypeStderr, Data: []byte("warn")})
						_ = w.Send(proto.Exit("", 3))
					}
				}
			}()
		}
	}()
	return sock
}

func TestExecOverHybridVsockWithIDlessAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := HybridVsock(fakeHybridVsock(t), proto.VsockPort)
	s, err := Start(ctx, dial, proto.Frame{Type: proto.TypeExec, Argv: []string{"echo", "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go s.SendStdin(strings.NewReader("input")) //nolint:errcheck
	var out, errb strings.Builder
	code, err := s.Wait(ctx, &out, &errb)
	if err != nil || code != 3 || out.String() != "echo hi:input" || errb.String() != "warn" {
		t.Fatalf("code %d err %v stdout %q stderr %q", code, err, out.String(), errb.String())
	}
}

func TestHybridVsockRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "vsock.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close() // what CH does when nothing listens on the guest port
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := HybridVsock(sock, 1024)(ctx); err == nil || !strings.Contains(err.Error(), "no agent listening") {
		t.Fatalf("err %v", err)
	}
}

func TestLostConnection(t *testing.T) {
	a, b := net.Pipe()
	dial := func(context.Context) (io.ReadWriteCloser, error) { return a, nil }
	go func() {
		r := proto.NewReader(b)
		_, _ = r.Next() // the request
		_ = proto.NewWriter(b).Send(&proto.Frame{Type: proto.TypeStarted})
		b.Close() // the guest dies
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Start(ctx, dial, proto.Frame{Type: proto.TypeExec, Argv: []string{"x"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Wait(ctx, nil, nil); !errors.Is(err, ErrLost) {
		t.Fatalf("err %v, want ErrLost", err)
	}
}
