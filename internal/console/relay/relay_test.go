package relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// Relays started by these tests re-exec this test binary.
func TestMain(m *testing.M) {
	Init()
	os.Exit(m.Run())
}

const patience = 20 * time.Second

// eventually polls cond until it holds, failing the test after patience.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never happened: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// shortDir is a temp dir whose socket paths fit sun_path.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "relay")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func fileHas(path, text string) func() bool {
	return func() bool {
		b, _ := os.ReadFile(path)
		return strings.Contains(string(b), text)
	}
}

// gone reports whether pid no longer exists (Start reaps its children).
func gone(pid int) func() bool {
	return func() bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }
}

func exists(path string) bool { _, err := os.Lstat(path); return err == nil }

// rawPTY opens a PTY pair with the slave side in raw mode (no echo, no line buffering), as a
// hypervisor's serial port sees it.
func rawPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Skipf("no PTYs here: %v", err)
	}
	if _, err := term.MakeRaw(int(slave.Fd())); err != nil {
		t.Fatal(err)
	}
	return master, slave
}

// attach connects a console client and collects what it receives.
type attached struct {
	conn net.Conn
	buf  *bytes.Buffer
	done chan struct{}
	mu   chan struct{}
}

func attach(t *testing.T, socket string) *attached {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	a := &attached{conn: c, buf: &bytes.Buffer{}, done: make(chan struct{}), mu: make(chan struct{}, 1)}
	go func() {
		defer close(a.done)
		b := make([]byte, 4096)
		for {
			n, err := c.Read(b)
			a.mu <- struct{}{}
			a.buf.Write(b[:n])
			<-a.mu
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close() })
	return a
}

func (a *attached) has(text string) func() bool {
	return func() bool {
		a.mu <- struct{}{}
		defer func() { <-a.mu }()
		return strings.Contains(a.buf.String(), text)
	}
}

// readUntil reads r until text appears.
func readUntil(t *testing.T, r io.Reader, text string) {
	t.Helper()
	found := make(chan error, 1)
	go func() {
		var got []byte
		br := bufio.NewReader(r)
		for {
			b, err := br.ReadByte()
			if err != nil {
				found <- err
				return
			}
			if got = append(got, b); bytes.Contains(got, []byte(text)) {
				found <- nil
				return
			}
		}
	}()
	select {
	case err := <-found:
		if err != nil {
			t.Fatalf("waiting for %q: %v", text, err)
		}
	case <-time.After(patience):
		t.Fatalf("%q never arrived", text)
	}
}

func TestPTYMasterFD(t *testing.T) {
	dir := shortDir(t)
	master, slave := rawPTY(t)
	defer slave.Close()
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	pid, err := Start(Options{Endpoint: Endpoint{FD: master}, Socket: sock, Log: log})
	master.Close() // the relay holds its own copy: the hypervisor's exit must reach it
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket after Start: %v, mode %v", err, st.Mode())
	}

	if _, err := slave.WriteString("early boot\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "early output logged with nobody attached", fileHas(log, "early boot"))

	// Two clients see the same output; both can type.
	a, b := attach(t, sock), attach(t, sock)
	// A connection is served once accepted; output before that is in the log only, so write
	// until both have seen a line.
	eventually(t, "both clients receive output", func() bool {
		_, _ = slave.WriteString("tick\r\n")
		time.Sleep(5 * time.Millisecond)
		return a.has("tick")() && b.has("tick")()
	})
	if _, err := a.conn.Write([]byte("from-a\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, slave, "from-a")
	if _, err := b.conn.Write([]byte("from-b\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, slave, "from-b")

	// One client leaving does not stop the relay nor the other client.
	a.conn.Close()
	<-a.done
	if _, err := slave.WriteString("after a left\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b still receives after a left", b.has("after a left"))
	eventually(t, "log still written", fileHas(log, "after a left"))

	// The hypervisor closing its side (EIO on the master) ends the relay: the client is
	// disconnected, the socket removed, the process gone.
	slave.WriteString("last words\r\n")
	slave.Close()
	select {
	case <-b.done:
	case <-time.After(patience):
		t.Fatal("client not disconnected when the endpoint closed")
	}
	if !b.has("last words")() {
		t.Fatalf("client missed the last output: %q", b.buf.String())
	}
	eventually(t, "relay process exits", gone(pid))
	if exists(sock) {
		t.Fatal("relay left its socket behind")
	}
	if err := Wait(log, time.Second); err != nil {
		t.Fatal(err)
	}
	if !fileHas(log, "last words")() {
		t.Fatal("last output not logged")
	}
}

func TestDialEndpoint(t *testing.T) {
	dir := shortDir(t)
	hvSock := filepath.Join(dir, "serial.sock")
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	// The relay starts before the hypervisor listens and keeps dialing.
	pid, err := Start(Options{Endpoint: Endpoint{Dial: hvSock}, Socket: sock, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", hvSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	if _, err := hv.Write([]byte("guest says hi\n")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "output logged", fileHas(log, "guest says hi"))

	c := attach(t, sock)
	if _, err := c.conn.Write([]byte("typed\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, hv, "typed")
	eventually(t, "client receives output", func() bool {
		_, _ = hv.Write([]byte("out\n"))
		time.Sleep(5 * time.Millisecond)
		return c.has("out")()
	})

	// A second relay for the same log is refused while the first runs.
	if _, err := Start(Options{Endpoint: Endpoint{Dial: hvSock}, Socket: filepath.Join(dir, "other.sock"), Log: log}); err == nil || !strings.Contains(err.Error(), "another relay is logging") {
		t.Fatalf("second relay on one log: %v", err)
	}
	// And a second relay on a served socket too.
	if _, err := Start(Options{Endpoint: Endpoint{Dial: hvSock}, Socket: sock, Log: filepath.Join(dir, "other.log")}); err == nil || !strings.Contains(err.Error(), "already served") {
		t.Fatalf("second relay on one socket: %v", err)
	}

	hv.Close() // the hypervisor exits
	eventually(t, "relay process exits", gone(pid))
	if exists(sock) {
		t.Fatal("relay left its socket behind")
	}
}

func TestDialTimeout(t *testing.T) {
	dir := shortDir(t)
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	pid, err := Start(Options{Endpoint: Endpoint{Dial: filepath.Join(dir, "nobody.sock")}, Socket: sock, Log: log,
		DialTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "relay gives up on a hypervisor that never listens", gone(pid))
	if exists(sock) {
		t.Fatal("relay left its socket behind")
	}
}

func TestStartValidates(t *testing.T) {
	dir := shortDir(t)
	sock, log := filepath.Join(dir, "c.sock"), filepath.Join(dir, "c.log")
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Socket: sock, Log: log}, "exactly one"},
		{Options{Endpoint: Endpoint{Dial: "/x", FD: os.Stdin}, Socket: sock, Log: log}, "exactly one"},
		{Options{Endpoint: Endpoint{Dial: "rel.sock"}, Socket: sock, Log: log}, "must be absolute"},
		{Options{Endpoint: Endpoint{Dial: "/x"}, Socket: "", Log: log}, "socket path"},
		{Options{Endpoint: Endpoint{Dial: "/x"}, Socket: sock, Log: "c.log"}, "log path"},
		{Options{Endpoint: Endpoint{Dial: "/x"}, Socket: "/" + strings.Repeat("a", 120), Log: log}, "longer than 107"},
	} {
		if _, err := Start(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestSince(t *testing.T) {
	dir := shortDir(t)
	log := filepath.Join(dir, "console.log")
	if _, err := Since(log, time.Now()); !errors.Is(err, ErrNoIndex) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Since without index: %v", err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var idx []byte
	for i, off := range []int64{100, 150, 400} { // 100 bytes came from a run without an index
		idx = append(idx, encodeRecord(off, base.Add(time.Duration(i)*time.Second))...)
	}
	idx = append(idx, 1, 2, 3) // a torn record is ignored
	if err := os.WriteFile(IndexPath(log), idx, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, make([]byte, 500), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    time.Time
		want int64
	}{
		{base.Add(-time.Hour), 0}, // before anything recorded: the unindexed start is included
		{base, 0},
		{base.Add(time.Millisecond), 150},
		{base.Add(time.Second), 150},
		{base.Add(1500 * time.Millisecond), 400},
		{base.Add(2 * time.Second), 400},
		{base.Add(time.Hour), 500}, // nothing since: the end of the log
	} {
		got, err := Since(log, tc.t)
		if err != nil || got != tc.want {
			t.Errorf("Since(%v) = %d, %v; want %d", tc.t.Sub(base), got, err, tc.want)
		}
	}
}

// TestSinceLive checks the index a running relay writes: output after a moment is found
// from that moment on.
func TestSinceLive(t *testing.T) {
	dir := shortDir(t)
	master, slave := rawPTY(t)
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	pid, err := Start(Options{Endpoint: Endpoint{FD: master}, Socket: sock, Log: log})
	master.Close()
	if err != nil {
		slave.Close()
		t.Fatal(err)
	}
	first := "before the mark\r\n"
	slave.WriteString(first)
	eventually(t, "first output logged", fileHas(log, "before the mark"))
	// Let the index's coalescing window pass so the next chunk gets its own record; the
	// assertions below do not depend on how long this takes.
	time.Sleep(3 * indexEvery)
	mark := time.Now()
	slave.WriteString("after the mark\r\n")
	eventually(t, "second output logged", fileHas(log, "after the mark"))
	off, err := Since(log, mark)
	if err != nil {
		t.Fatal(err)
	}
	if off != int64(len(first)) {
		t.Fatalf("Since(mark) = %d, want %d", off, len(first))
	}
	if off, _ := Since(log, mark.Add(-time.Hour)); off != 0 {
		t.Fatalf("Since(long ago) = %d, want 0", off)
	}
	slave.Close()
	eventually(t, "relay exits", gone(pid))
}

// TestStalledClientNeverBlocksTheGuest: a client that stops reading (a suspended terminal)
// is dropped once far behind; the hypervisor's writes keep flowing and are all logged.
func TestStalledClientNeverBlocksTheGuest(t *testing.T) {
	dir := shortDir(t)
	hvSock := filepath.Join(dir, "serial.sock")
	ln, err := net.Listen("unix", hvSock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sock, log := filepath.Join(dir, "console.sock"), filepath.Join(dir, "console.log")
	pid, err := Start(Options{Endpoint: Endpoint{Dial: hvSock}, Socket: sock, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	hv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	stalled, err := net.Dial("unix", sock) // never reads
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// Make sure the relay has accepted the stalled client before the flood.
	live := attach(t, sock)
	eventually(t, "clients attached", func() bool {
		_, _ = hv.Write([]byte("ping\n"))
		time.Sleep(5 * time.Millisecond)
		return live.has("ping")()
	})
	before, _ := os.Stat(log)
	const total = 4 * maxQueued
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	done := make(chan error, 1)
	go func() {
		for n := 0; n < total; n += len(chunk) {
			if _, err := hv.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(patience):
		t.Fatal("the hypervisor's console writes blocked behind a stalled client")
	}
	eventually(t, "all output logged", func() bool {
		st, _ := os.Stat(log)
		return st.Size() >= before.Size()+total
	})
	hv.Close()
	eventually(t, "relay exits", gone(pid))
}

// TestKillStale: a relay left dialing for a hypervisor that never came (its launch was
// interrupted) is ended by its socket path, and only that one.
func TestKillStale(t *testing.T) {
	dir := shortDir(t)
	start := func(name string) (int, string, string) {
		sock, log := filepath.Join(dir, name+".sock"), filepath.Join(dir, name+".log")
		pid, err := Start(Options{Endpoint: Endpoint{Dial: filepath.Join(dir, "nobody-"+name)}, Socket: sock, Log: log,
			DialTimeout: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { Kill(pid) })
		return pid, sock, log
	}
	stale, staleSock, staleLog := start("stale")
	other, _, _ := start("other")
	if err := KillStale(staleSock); err != nil {
		t.Fatal(err)
	}
	eventually(t, "stale relay gone", gone(stale))
	if err := Wait(staleLog, time.Second); err != nil {
		t.Fatal(err)
	}
	if gone(other)() {
		t.Fatal("KillStale ended a relay of another socket")
	}
	if err := KillStale(filepath.Join(dir, "none.sock")); err != nil {
		t.Fatal(err)
	}
}
