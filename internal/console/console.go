// Package console attaches the local terminal to a VM's serial console socket, with escape
// sequences recognised anywhere in the input, as the original's (by default "^]." disconnects).
//
// Window size: a serial port has no way to carry the terminal size to the guest (QEMU's
// virtconsole neither, up to QEMU 8), so nothing is sent on attach or on SIGWINCH; the guest
// keeps whatever size it believes (run `stty rows R cols C` or busybox `resize` inside the
// guest). Typing a stty command into the guest's shell on its behalf would be worse than none.
package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/cocoonstack/cocoon/internal/lock"
)

// ErrAlreadyAttached is returned when another session holds the VM's console. Callers name
// the VM: fmt.Errorf("console of VM %s is already attached in another session", ref).
var ErrAlreadyAttached = errors.New("console is already attached in another session")

// errDetach ends the session at the user's request.
var errDetach = errors.New("detached")

// Attach relays in to the console socket and the socket to out until the user types the
// escape sequence, the VM closes the console (it stopped), in reaches EOF, or ctx ends.
// lockPath is held for the whole session so a second Attach fails fast with
// ErrAlreadyAttached (the socket itself would just leave a second client hanging). When in is
// a terminal it is put in raw mode and restored on return. Input that is not a terminal
// (a pipe, a file) works too. onAttached (may be nil) runs once the session is connected, so
// callers announce a session only when there is one.
func Attach(ctx context.Context, socketPath, lockPath string, in *os.File, out io.Writer, escape byte, onAttached func()) error {
	l := lock.New(lockPath)
	if err := l.TryLock(); err != nil {
		if errors.Is(err, lock.ErrBusy) {
			return ErrAlreadyAttached
		}
		return err
	}
	defer l.Unlock()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return fmt.Errorf("connect to console %s: %w", socketPath, err)
	}
	defer conn.Close()
	if onAttached != nil {
		onAttached()
	}

	input, restore, err := openInput(in)
	if err != nil {
		return err
	}
	defer restore()

	done := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, err := io.Copy(out, conn)
		done <- cleanEnd(err)
	}()
	go func() {
		defer wg.Done()
		done <- relayInput(input, conn, out, escape)
	}()

	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	// Unblock whichever side is still running, and wait so nothing writes to out after we
	// return.
	_ = conn.Close()
	_ = input.SetReadDeadline(time.Now())
	wg.Wait()
	if errors.Is(err, errDetach) {
		return nil
	}
	return err
}

// openInput returns a pollable duplicate of in (a blocking read of a terminal could not be
// interrupted when the session ends), in raw mode when it is a terminal, and a func that
// restores the terminal mode and in's file status flags.
func openInput(in *os.File) (*os.File, func(), error) {
	rc, err := in.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("console input: %w", err)
	}
	var dup, flags int
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		if flags, opErr = unix.FcntlInt(fd, unix.F_GETFL, 0); opErr == nil {
			dup, opErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		}
	}); err != nil || opErr != nil {
		return nil, nil, fmt.Errorf("console input: %w", errors.Join(err, opErr))
	}
	// O_NONBLOCK lives in the open file description shared with in; restore() puts it back.
	if err := unix.SetNonblock(dup, true); err != nil {
		_ = unix.Close(dup)
		return nil, nil, fmt.Errorf("console input: %w", err)
	}
	var oldState *term.State
	if term.IsTerminal(dup) {
		if oldState, err = term.MakeRaw(dup); err != nil {
			_ = unix.Close(dup)
			return nil, nil, fmt.Errorf("put terminal in raw mode: %w", err)
		}
	}
	f := os.NewFile(uintptr(dup), in.Name())
	restore := func() {
		if oldState != nil {
			_ = term.Restore(dup, oldState)
		}
		_ = f.Close()
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETFL, flags) })
	}
	return f, restore, nil
}

// relayInput copies in to conn through the escape detector.
func relayInput(in io.Reader, conn io.Writer, out io.Writer, esc byte) error {
	e := newEscaper(esc)
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		for _, s := range e.feed(buf[:n]) {
			var werr error
			switch s.act {
			case actSend:
				_, werr = conn.Write(s.data)
			case actHelp:
				_, werr = io.WriteString(out, helpText(esc))
			case actDetach:
				return errDetach
			}
			if werr != nil {
				return cleanEnd(werr)
			}
		}
		if err != nil {
			return cleanEnd(err)
		}
	}
}

// cleanEnd maps the ordinary ways a session ends to nil: EOF on either side, a terminal
// hang-up (EIO), and our own teardown (closed socket, expired read deadline).
func cleanEnd(err error) error {
	switch {
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, syscall.EIO),
		errors.Is(err, net.ErrClosed), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, os.ErrClosed):
		return nil
	}
	return err
}
