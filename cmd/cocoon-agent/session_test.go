package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// pipeDialer serves each dialled connection like a vsock connection of the agent.
func pipeDialer() client.Dialer {
	return func(context.Context) (io.ReadWriteCloser, error) {
		a, b := net.Pipe()
		go func() { defer b.Close(); serveStream("test", b, b, nil) }()
		return a, nil
	}
}

func run(t *testing.T, req proto.Frame, stdin string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := client.Start(ctx, pipeDialer(), req)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	go s.SendStdin(strings.NewReader(stdin)) //nolint:errcheck
	var out, errb strings.Builder
	code, err := s.Wait(ctx, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestExecSession(t *testing.T) {
	out, errOut, code := run(t, proto.Frame{Type: proto.TypeExec, Argv: []string{"sh", "-c", "echo out; echo err >&2; cat; exit 3"}}, "in\n")
	if out != "out\nin\n" || errOut != "err\n" || code != 3 {
		t.Fatalf("stdout %q stderr %q code %d", out, errOut, code)
	}
	if _, errOut, code := run(t, proto.Frame{Type: proto.TypeExec, Argv: []string{"no-such-cmd-xyz"}}, ""); code != 127 || !strings.Contains(errOut, "not found") {
		t.Fatalf("missing command: %q %d", errOut, code)
	}
	// A background child holding stdout open does not keep the session waiting.
	start := time.Now()
	if out, _, code := run(t, proto.Frame{Type: proto.TypeExec, Argv: []string{"sh", "-c", "sleep 30 & echo bg"}}, ""); code != 0 || out != "bg\n" {
		t.Fatalf("background child: %q %d", out, code)
	}
	if time.Since(start) > 15*time.Second {
		t.Fatal("session waited for the background child")
	}
}

func TestConnectSession(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		data, _ := io.ReadAll(c)
		_, _ = c.Write([]byte(strings.ToUpper(string(data))))
		c.Close()
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	out, _, code := run(t, proto.Frame{Type: proto.TypeConnect, Port: port}, "tunnel")
	if out != "TUNNEL" || code != 0 {
		t.Fatalf("connect: %q %d", out, code)
	}
}

// The port reader's vectored reads deliver a stream intact, and EOF at its end.
func TestPortReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data := make([]byte, 1<<20+123)
	for i := range data {
		data[i] = byte(i % 251)
	}
	go func() { _, _ = w.Write(data); w.Close() }()
	got, err := io.ReadAll(newPortReader(r))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v, equal %v", len(got), err, bytes.Equal(got, data))
	}
}
