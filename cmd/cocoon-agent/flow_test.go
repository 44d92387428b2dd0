package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/client"
	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/agent/tarx"
)

// serialPort plays a virtio-serial port: one byte stream the agent serves for ever (a unix
// socket pair, so both ways are buffered), which host clients use one after another. What the
// guest writes while no client is attached is dropped, as QEMU drops it.
type serialPort struct {
	host net.Conn // our end of the stream
	mu   sync.Mutex
	cur  net.Conn // the attached client's far end
}

func newSerialPort(t *testing.T) *serialPort {
	ln, err := net.Listen("unix", t.TempDir()+"/port")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	host, err := net.Dial("unix", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	guest := <-accepted
	t.Cleanup(func() { host.Close(); guest.Close() })
	go serveStream("port", guest, guest, nil)
	p := &serialPort{host: host}
	go func() { // guest → the attached client
		buf := make([]byte, 64<<10)
		for {
			n, err := host.Read(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			c := p.cur
			p.mu.Unlock()
			if c != nil {
				_, _ = c.Write(buf[:n])
			}
		}
	}()
	return p
}

// dial attaches a client; it stays attached until it closes.
func (p *serialPort) dial(context.Context) (io.ReadWriteCloser, error) {
	mine, far := net.Pipe()
	p.mu.Lock()
	p.cur = far
	p.mu.Unlock()
	go func() { // client → guest, until the client closes
		_, _ = io.Copy(p.host, far)
		p.mu.Lock()
		if p.cur == far {
			p.cur = nil
		}
		p.mu.Unlock()
		far.Close()
	}()
	return sharedConn{mine}, nil
}

type sharedConn struct{ net.Conn }

func (sharedConn) SharedStream() bool { return true }

// countingZeros is an endless stdin that counts what was read of it and says when it passed
// a mark.
type countingZeros struct {
	n      atomic.Int64
	mark   int64
	passed chan struct{}
	once   sync.Once
}

func (z *countingZeros) Read(p []byte) (int, error) {
	clear(p)
	if z.n.Add(int64(len(p))) >= z.mark {
		z.once.Do(func() { close(z.passed) })
	}
	return len(p), nil
}

// stallStdin starts a command that never reads its stdin and feeds it endless stdin until the
// client's window is used up.
func stallStdin(t *testing.T, ctx context.Context, dial client.Dialer) (*client.Session, *countingZeros) {
	t.Helper()
	s, err := client.Start(ctx, dial, proto.Frame{Type: proto.TypeExec, Argv: []string{"sleep", "600"}})
	if err != nil {
		t.Fatal(err)
	}
	z := &countingZeros{mark: proto.WindowSize, passed: make(chan struct{})}
	go s.SendStdin(z) //nolint:errcheck // ends with the session
	select {
	case <-z.passed:
	case <-ctx.Done():
		t.Fatal("stdin did not flow")
	}
	return s, z
}

// A command that never reads its stdin holds back only its own stdin: the client stops at
// the window, and the session's other frames (here a KILL) still get through on the stream.
func TestStalledStdinLeavesStreamServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, z := stallStdin(t, ctx, socketDialer(t))
	defer s.Close()
	// The client may send its window plus what the command's stdin pipe took (credited), and
	// reads one buffer ahead (after the kill, the agent drops stdin and credits it, so this is
	// looked at before).
	if n, most := z.n.Load(), int64(proto.WindowSize+pipeSize+2*proto.Chunk); n > most {
		t.Fatalf("the client took %d bytes of stdin, more than window + pipe (%d)", n, most)
	}
	if err := s.Signal("KILL"); err != nil {
		t.Fatal(err)
	}
	code, err := s.Wait(ctx, io.Discard, io.Discard)
	if err != nil || code != 128+9 {
		t.Fatalf("after KILL: code %d err %v, want 137", code, err)
	}
}

// On a port (one stream, successive clients), a client that left a session with stalled stdin
// behind does not block the next client: its request is read and served.
func TestStalledStdinLeavesPortServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newSerialPort(t)
	s, _ := stallStdin(t, ctx, p.dial)
	s.Close() // the client goes away mid-stream, its command still not reading
	out, code := runOn(t, ctx, p.dial, "echo next")
	if out != "next\n" || code != 0 {
		t.Fatalf("next session: %q %d", out, code)
	}
}

// A host client that stops reading output holds back only that session's output: the agent
// stops at the window while the session's stdin still reaches the command, and the next client
// of the port is served once this one left.
func TestStalledOutputLeavesPortServed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := newSerialPort(t)
	got := filepath.Join(t.TempDir(), "got")
	s, err := client.Start(ctx, p.dial, proto.Frame{Type: proto.TypeExec, Argv: []string{"sh", "-c", `cat /dev/zero & read x; echo "$x" >"$0.tmp"; mv "$0.tmp" "$0"; sleep 600`, got}})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing reads the session's output (no Wait); its stdin still gets through.
	if _, err := io.WriteString(s.Stdin(), "line\n"); err != nil {
		t.Fatal(err)
	}
	for {
		if b, err := os.ReadFile(got); err == nil {
			if string(b) != "line\n" {
				t.Fatalf("the command read %q", b)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("stdin never reached the command while its output was not read")
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Close()
	out, code := runOn(t, ctx, p.dial, "echo next")
	if out != "next\n" || code != 0 {
		t.Fatalf("next session: %q %d", out, code)
	}
}

func runOn(t *testing.T, ctx context.Context, dial client.Dialer, script string) (string, int) {
	t.Helper()
	s, err := client.Start(ctx, dial, proto.Frame{Type: proto.TypeExec, Argv: []string{"sh", "-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	code, err := s.Wait(ctx, &out, io.Discard)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	return out.String(), code
}

// Output the client discards is credited as well: more than a window of it flows.
func TestDiscardedOutputIsCredited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := client.Start(ctx, socketDialer(t), proto.Frame{Type: proto.TypeExec, Argv: []string{"head", "-c", "5000000", "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.CloseStdin()
	if code, err := s.Wait(ctx, nil, nil); err != nil || code != 0 {
		t.Fatalf("code %d err %v", code, err)
	}
}

// copy_in and copy_out move a tree larger than the window intact (v2 frames both ways).
func TestCopyRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src := filepath.Join(t.TempDir(), "tree")
	big := make([]byte, 3*proto.WindowSize+12345)
	for i := range big {
		big[i] = byte(i*131 + i>>9)
	}
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "big"), big, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "small"), []byte("hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := t.TempDir()
	pr, pw := io.Pipe()
	go func() { _, err := tarx.Pack(pw, src); pw.CloseWithError(err) }()
	s, err := client.Start(ctx, socketDialer(t), proto.Frame{Type: proto.TypeCopyIn, Path: in, Name: "tree"})
	if err != nil {
		t.Fatal(err)
	}
	go s.SendStdin(pr) //nolint:errcheck
	if code, err := s.Wait(ctx, nil, nil); err != nil || code != 0 {
		t.Fatalf("copy_in: %d %v", code, err)
	}
	s.Close()

	s, err = client.Start(ctx, socketDialer(t), proto.Frame{Type: proto.TypeCopyOut, Path: filepath.Join(in, "tree")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_ = s.CloseStdin()
	tr, tw := io.Pipe()
	out := t.TempDir()
	extracted := make(chan error, 1)
	go func() { err := tarx.Extract(ctx, tr, out, "tree", true); tr.CloseWithError(err); extracted <- err }()
	_, err = s.Wait(ctx, tw, nil)
	tw.CloseWithError(err)
	if xerr := <-extracted; err != nil || xerr != nil {
		t.Fatalf("copy_out: %v, extract: %v", err, xerr)
	}
	for rel, want := range map[string][]byte{"sub/big": big, "small": []byte("hi\n")} {
		for _, dir := range []string{filepath.Join(in, "tree"), filepath.Join(out, "tree")} {
			if got, err := os.ReadFile(filepath.Join(dir, rel)); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s in %s differs (err %v)", rel, dir, err)
			}
		}
	}
}
