package main

import (
	"errors"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// A virtio-serial port reads EOF while no host client is connected, and the kernel sends
// SIGIO (to fasync owners) when a host connects or disconnects. So a port that reads EOF waits
// for a wake-up (SIGIO, or a slow tick in case one was missed) and then tries to read again.
//
// An EOF does not prove the session's host is gone: the guest learns of a disconnect and the
// next client's connect on the control queue, and that client's data on the port's own queue,
// so the next client's request can be read before the previous client's disconnect is seen.
// A session is therefore only ended when the port stays disconnected for hostGoneAfter, or
// when a new request arrives.
type waker struct {
	mu sync.Mutex
	ch chan struct{}
}

func (w *waker) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *waker) wake() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}

// safetyWake wakes idle ports now and then in case a wake-up was lost: a port whose host
// connected while no SIGIO could be sent would otherwise wait for the next one. It is slow on
// purpose: every wake-up of an idle guest costs emulated CPU under TCG, and memory in each
// clone of a snapshot of it (pages the guest writes are copied for that clone).
const safetyWake = 30 * time.Second

func serveSerial() {
	w := &waker{ch: make(chan struct{})}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGIO)
	go func() {
		tick := time.NewTicker(safetyWake)
		for {
			select {
			case <-sig:
			case <-tick.C:
			}
			syncClock() // before the ports read what a connecting host sends
			w.wake()
		}
	}()
	// Ports are fixed at boot, but virtio_console may probe them after the agent starts: scan
	// until two scans in a row find the same ports, then stop.
	serving := map[string]bool{}
	for prev := -1; ; time.Sleep(2 * time.Second) {
		found := findPorts()
		for name, dev := range found {
			if !serving[name] {
				serving[name] = true
				go servePort(name, dev, w)
			}
		}
		if len(found) > 0 && len(found) == prev {
			select {}
		}
		prev = len(found)
	}
}

// findPorts maps our port names to their device nodes.
func findPorts() map[string]string {
	out := map[string]string{}
	dirs, _ := filepath.Glob("/sys/class/virtio-ports/vport*")
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "name"))
		name := strings.TrimSpace(string(b))
		if err != nil || !strings.HasPrefix(name, proto.SerialPortPrefix) {
			continue
		}
		out[name] = "/dev/" + filepath.Base(d)
	}
	return out
}

func servePort(name, dev string, w *waker) {
	var f *os.File
	for f == nil {
		fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			log.Printf("open %s (%s): %v", dev, name, err)
			<-w.wait()
			continue
		}
		f = os.NewFile(uintptr(fd), dev)
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETOWN, os.Getpid())
		}
		if err == nil {
			_, err = unix.FcntlInt(uintptr(fd), unix.F_SETFL, flags|unix.O_ASYNC)
		}
		if err != nil {
			log.Printf("%s: no SIGIO (%v), polling each second", dev, err)
			go func() {
				for range time.Tick(time.Second) {
					w.wake()
				}
			}()
		}
	}
	log.Printf("serving %s on %s", name, dev)
	serveStream(name, newPortReader(f), f, w)
}

// portReader reads a virtio-serial port several buffers per system call. The driver hands out
// at most one of its page-sized receive buffers per read(2), and it has no read_iter, so
// readv(2) runs its read once per vector: a 16-vector readv takes up to 16 buffers in one
// call (it stops at the first short one). System calls are dear under TCG.
type portReader struct {
	f    *os.File
	rc   syscall.RawConn
	iovs [][]byte
}

const portReadVectors = 16

func newPortReader(f *os.File) io.Reader {
	rc, err := f.SyscallConn()
	if err != nil {
		return f
	}
	return &portReader{f: f, rc: rc, iovs: make([][]byte, 0, portReadVectors)}
}

func (r *portReader) Read(p []byte) (int, error) {
	page, all := os.Getpagesize(), p
	r.iovs = r.iovs[:0]
	for len(p) > 0 && len(r.iovs) < portReadVectors {
		c := min(len(p), page)
		r.iovs = append(r.iovs, p[:c])
		p = p[c:]
	}
	var n int
	var err error
	if cerr := r.rc.Read(func(fd uintptr) bool {
		n, err = unix.Readv(int(fd), r.iovs)
		return !errors.Is(err, unix.EAGAIN)
	}); cerr != nil {
		return r.f.Read(all) // not pollable: plain reads
	}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, io.EOF // no host client connected
	}
	return n, nil
}
