package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// outputGrace is how long empty output pipes are still watched after the command exited, for
// a background child it started that keeps them open.
const outputGrace = time.Second

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL,
	"TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "WINCH": syscall.SIGWINCH,
}

type account struct {
	uid, gid uint32
	home     string
	name     string
}

// lookupUser finds a user by name or numeric uid in /etc/passwd.
func lookupUser(u string) (account, error) {
	a := account{home: "/", name: u}
	f, err := os.Open("/etc/passwd")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			p := strings.Split(sc.Text(), ":")
			if len(p) < 7 || (p[0] != u && p[2] != u) {
				continue
			}
			uid, err1 := strconv.ParseUint(p[2], 10, 32)
			gid, err2 := strconv.ParseUint(p[3], 10, 32)
			if err1 != nil || err2 != nil {
				continue
			}
			return account{uid: uint32(uid), gid: uint32(gid), home: p[5], name: p[0]}, nil
		}
	}
	if uid, err := strconv.ParseUint(u, 10, 32); err == nil {
		a.uid, a.gid = uint32(uid), uint32(uid)
		return a, nil
	}
	return a, fmt.Errorf("unknown user %q", u)
}

// lookPath resolves argv0 like a shell would, on the session's PATH.
func lookPath(name, path string) (string, int, error) {
	if strings.Contains(name, "/") {
		return name, 0, checkExec(name)
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if checkExec(p) == nil {
			return p, 0, nil
		}
	}
	return "", 127, fmt.Errorf("%s: not found", name)
}

func checkExec(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: permission denied", p)
	}
	return nil
}

func startExec(s *session, f *proto.Frame) {
	if len(f.Argv) == 0 {
		s.fail("exec: empty argv")
		return
	}
	user := f.User
	if user == "" {
		user = "root"
	}
	acct, err := lookupUser(user)
	if err != nil {
		s.fail("exec: " + err.Error())
		return
	}
	env := map[string]string{"PATH": defaultPath, "HOME": acct.home, "USER": acct.name, "LOGNAME": acct.name}
	if f.TTY {
		env["TERM"] = "xterm"
	}
	for k, v := range f.Env {
		env[k] = v
	}
	path, code, err := lookPath(f.Argv[0], env["PATH"])
	if err != nil {
		// As a shell does: the message on stderr, 127 (not found) or 126 (not executable).
		if code == 0 {
			code = 126
		}
		s.send(&proto.Frame{Type: proto.TypeStderr, Data: []byte("cocoon-agent: " + err.Error() + "\n")})
		s.finish(code)
		return
	}
	cmd := &exec.Cmd{Path: path, Args: f.Argv, Dir: f.Dir}
	if cmd.Dir == "" {
		cmd.Dir = acct.home
		if st, err := os.Stat(cmd.Dir); err != nil || !st.IsDir() {
			cmd.Dir = "/"
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	attr := &syscall.SysProcAttr{Setpgid: !f.TTY, Setsid: f.TTY, Setctty: f.TTY}
	if acct.uid != 0 || acct.gid != 0 {
		attr.Credential = &syscall.Credential{Uid: acct.uid, Gid: acct.gid}
	}
	if f.TTY {
		runTTY(s, f, cmd, attr)
		return
	}
	cmd.SysProcAttr = attr
	outR, outW, err := os.Pipe()
	if err != nil {
		s.fail("exec: " + err.Error())
		return
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		s.fail("exec: " + err.Error())
		return
	}
	defer outR.Close()
	defer errR.Close()
	cmd.Stdout, cmd.Stderr = outW, errW
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	outW.Close()
	errW.Close()
	if err != nil {
		s.fail("exec " + f.Argv[0] + ": " + err.Error())
		return
	}
	growPipes(stdin, outR, errR)
	pid := cmd.Process.Pid
	s.setHooks(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }, nil, func(name string) { signalGroup(pid, name) })
	s.send(&proto.Frame{Type: proto.TypeStarted, PID: pid})
	go s.pumpStdin(stdin, func() { stdin.Close() })
	copied := make(chan struct{})
	go func() {
		done := make(chan struct{})
		go func() { s.copyOut(proto.TypeStderr, errR); close(done) }()
		s.copyOut(proto.TypeStdout, outR)
		<-done
		close(copied)
	}()
	err = cmd.Wait()
	drainAfterExit(copied, outR, errR)
	s.finish(exitCode(err, cmd.ProcessState))
}

// pipeSize is what growPipes asks for (the kernel's default cap for unprivileged users too).
const pipeSize = 1 << 20

// growPipes enlarges the command's pipes from 64 KiB. On a guest's few (emulated) CPUs the
// command and the agent take turns; with a small pipe they switch every 64 KiB and the agent
// reads small pieces, each a frame and a virtio-serial write of its own. Best effort.
func growPipes(pipes ...any) {
	for _, p := range pipes {
		if sc, ok := p.(syscall.Conn); ok {
			if rc, err := sc.SyscallConn(); err == nil {
				_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
			}
		}
	}
}

// copyOut sends everything read from r as frames of type typ, a read per frame. To a v2
// client the data is read behind room for the frame header and sent from there, untouched.
func (s *session) copyOut(typ string, r io.Reader) {
	if !s.v2 {
		_, _ = io.CopyBuffer(s.output(typ), struct{ io.Reader }{r}, make([]byte, proto.GuestChunk))
		return
	}
	buf := make([]byte, proto.HeaderRoom+proto.GuestChunk)
	for {
		n, rerr := r.Read(buf[proto.HeaderRoom:])
		if s.sendOutput(typ, buf[:proto.HeaderRoom+n]) != nil || rerr != nil {
			return
		}
	}
}

// sendOutput sends buf[HeaderRoom:] to a v2 client as it grants credit, a frame at a time.
func (s *session) sendOutput(typ string, buf []byte) error {
	for off := proto.HeaderRoom; off < len(buf); {
		c, err := s.out.Acquire(len(buf) - off)
		if err != nil {
			return err
		}
		if s.dead.Load() {
			return proto.ErrSessionEnded
		}
		// What was sent before off is free room for the next header.
		if err := s.w.SendPrefixed(typ, s.id, buf[:off+c], off); err != nil {
			return err
		}
		off += c
	}
	return nil
}

// outputWriter gathers writes into full frames for a v2 client (a tar's small and odd-sized
// writes); Flush sends the rest.
type outputWriter struct {
	s   *session
	typ string
	buf []byte // HeaderRoom, then up to GuestChunk of data
}

func (s *session) newOutputWriter(typ string) *outputWriter {
	return &outputWriter{s: s, typ: typ, buf: make([]byte, proto.HeaderRoom, proto.HeaderRoom+proto.GuestChunk)}
}

func (w *outputWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		c := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:c]...)
		p = p[c:]
		if len(w.buf) == cap(w.buf) {
			if err := w.Flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *outputWriter) Flush() error {
	err := w.s.sendOutput(w.typ, w.buf)
	w.buf = w.buf[:proto.HeaderRoom]
	return err
}

// drainAfterExit waits until the output copies end (copied closes). Output still buffered is
// always sent; but when the pipes are empty for outputGrace after the command exited, a
// background child still holding them open is not waited for (docker exec would hang).
func drainAfterExit(copied <-chan struct{}, files ...*os.File) {
	emptySince := time.Time{}
	for {
		select {
		case <-copied:
			return
		case <-time.After(50 * time.Millisecond):
		}
		if !allEmpty(files) {
			emptySince = time.Time{}
			continue
		}
		if emptySince.IsZero() {
			emptySince = time.Now()
		}
		if time.Since(emptySince) >= outputGrace {
			for _, f := range files {
				_ = f.SetReadDeadline(time.Now())
			}
		}
	}
}

func allEmpty(files []*os.File) bool {
	for _, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return true
		}
		n := 0
		_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
		if n > 0 {
			return false
		}
	}
	return true
}

func runTTY(s *session, f *proto.Frame, cmd *exec.Cmd, attr *syscall.SysProcAttr) {
	ws := &pty.Winsize{Rows: f.Rows, Cols: f.Cols}
	if ws.Rows == 0 || ws.Cols == 0 {
		ws.Rows, ws.Cols = 24, 80
	}
	ptmx, err := pty.StartWithAttrs(cmd, ws, attr)
	if err != nil {
		s.fail("exec " + f.Argv[0] + ": " + err.Error())
		return
	}
	pid := cmd.Process.Pid
	s.setHooks(func() { _ = syscall.Kill(-pid, syscall.SIGKILL); ptmx.Close() },
		func(rows, cols uint16) { _ = pty.Setsize(ptmx, &pty.Winsize{Rows: rows, Cols: cols}) },
		func(name string) { signalGroup(pid, name) })
	s.send(&proto.Frame{Type: proto.TypeStarted, PID: pid})
	copied := make(chan struct{})
	go func() { s.copyOut(proto.TypeStdout, ptmx); close(copied) }()
	go s.pumpStdin(ptmx, func() {}) // a closed stdin leaves the terminal open, as docker does
	err = cmd.Wait()
	drainAfterExit(copied, ptmx)
	ptmx.Close()
	s.finish(exitCode(err, cmd.ProcessState))
}

func signalGroup(pid int, name string) {
	if sig, ok := signals[strings.TrimPrefix(strings.ToUpper(name), "SIG")]; ok {
		_ = syscall.Kill(-pid, sig)
	}
}

// exitCode is the shell's view: the status, or 128+signal.
func exitCode(err error, ps *os.ProcessState) int {
	if ps == nil {
		return 255
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	if code := ps.ExitCode(); code >= 0 {
		return code
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return 255
}

// sessionWriter sends through the session, so nothing goes out once it was aborted.
type sessionWriter struct{ s *session }

func (w sessionWriter) Send(f *proto.Frame) error {
	if w.s.dead.Load() {
		return errors.New("session ended")
	}
	return w.s.w.Send(f)
}
