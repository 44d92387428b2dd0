package relay

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
)

// maxQueued bounds the output waiting for one client; a client that falls this far behind is
// disconnected, so a stalled terminal never makes the relay (and so the guest) wait.
const maxQueued = 4 << 20

// indexEvery is the least time between two index records.
const indexEvery = 10 * time.Millisecond

type relay struct {
	cfg    config
	ln     *net.UnixListener
	sockID [2]uint64 // dev, ino of the socket we created: removed on exit only if still ours
	log    *os.File
	index  *os.File // also holds the flock that marks a relay as logging to log
	offset int64    // size of log: the offset of the next byte appended
	lastTS time.Time

	endpoint io.ReadWriteCloser
	inMu     sync.Mutex // one client's write to the endpoint is never split by another's

	mu      sync.Mutex
	clients map[*client]struct{}
}

type client struct {
	conn   net.Conn
	mu     sync.Mutex
	cond   *sync.Cond
	queue  [][]byte
	queued int
	closed bool
	done   chan struct{} // closed when the writer returns
}

// newRelay opens the log and index and listens on the client socket. The endpoint is opened
// in run (a dial may wait for the hypervisor), so Start returns as soon as clients can connect.
func newRelay(c config, fd *os.File) (*relay, error) {
	r := &relay{cfg: c, clients: map[*client]struct{}{}}
	if fd != nil {
		r.endpoint = fd
	}
	var err error
	if r.log, err = os.OpenFile(c.log, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600); err != nil {
		return nil, fmt.Errorf("console relay: open log: %w", err)
	}
	if r.index, err = os.OpenFile(IndexPath(c.log), os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600); err != nil {
		return nil, fmt.Errorf("console relay: open log index: %w", err)
	}
	if err := unix.Flock(int(r.index.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("console relay: another relay is logging to %s", c.log)
	}
	if r.offset, err = r.log.Seek(0, io.SeekEnd); err != nil {
		return nil, fmt.Errorf("console relay: size of log: %w", err)
	}
	// A torn record left by a crash would shift every later one.
	if st, err := r.index.Stat(); err == nil && st.Size()%recordSize != 0 {
		_ = r.index.Truncate(st.Size() - st.Size()%recordSize)
	}
	if err := r.listen(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *relay) listen() error {
	// A socket file left by a relay that died uncleanly answers nothing: replace it. A live one
	// means someone else serves this console.
	if st, err := os.Lstat(r.cfg.socket); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("console relay: %s exists and is not a socket", r.cfg.socket)
		}
		if c, err := net.DialTimeout("unix", r.cfg.socket, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("console relay: %s is already served", r.cfg.socket)
		}
		_ = os.Remove(r.cfg.socket)
	}
	old := unix.Umask(0o177) // the socket is created 0600: a console is a root shell
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: r.cfg.socket, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("console relay: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false) // removed by removeSocket, only if still ours
	var st unix.Stat_t
	if err := unix.Stat(r.cfg.socket, &st); err != nil {
		ln.Close()
		return fmt.Errorf("console relay: %w", err)
	}
	r.ln, r.sockID = ln, [2]uint64{st.Dev, st.Ino}
	return nil
}

func (r *relay) removeSocket() {
	var st unix.Stat_t
	if unix.Stat(r.cfg.socket, &st) == nil && st.Dev == r.sockID[0] && st.Ino == r.sockID[1] {
		_ = os.Remove(r.cfg.socket)
	}
}

// run serves until the endpoint ends, then removes the socket.
func (r *relay) run() error {
	defer r.removeSocket()
	defer r.ln.Close()
	if r.endpoint == nil {
		ep, err := r.openEndpoint()
		if err != nil {
			return err
		}
		r.endpoint = ep
	}
	go r.accept()
	err := r.pump()
	r.closeClients()
	return err
}

func (r *relay) openEndpoint() (io.ReadWriteCloser, error) {
	switch r.cfg.kind {
	case "dial":
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.dialTimeout)
		defer cancel()
		var d net.Dialer
		for {
			c, err := d.DialContext(ctx, "unix", r.cfg.target)
			if err == nil {
				return c, nil
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("console relay: connect to %s within %v: %w", r.cfg.target, r.cfg.dialTimeout, err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil, fmt.Errorf("console relay: no endpoint")
}

// pump reads the endpoint until it ends. It never waits on a client, and a log write error
// (a full disk) does not stop it either: the guest must not block on its console.
func (r *relay) pump() error {
	buf := make([]byte, 32<<10)
	var logErr error
	for {
		n, err := r.endpoint.Read(buf)
		if n > 0 {
			if werr := r.record(buf[:n]); werr != nil && logErr == nil {
				logErr = werr
				fmt.Fprintln(os.Stderr, werr)
			}
			r.broadcast(buf[:n])
		}
		if err != nil {
			if hypervisorGone(err) {
				return nil
			}
			return fmt.Errorf("console relay: read %s: %w", r.cfg.kind, err)
		}
	}
}

// hypervisorGone: the other end closed (a socket's EOF or reset, a PTY's EIO once no process
// holds the slave side).
func hypervisorGone(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, os.ErrClosed)
}

// record appends p to the log and, at most every indexEvery, an index record for it.
func (r *relay) record(p []byte) error {
	now := time.Now()
	start := r.offset
	n, err := r.log.Write(p)
	r.offset += int64(n)
	if err != nil {
		return fmt.Errorf("console relay: write log: %w", err)
	}
	if now.Sub(r.lastTS) < indexEvery {
		return nil
	}
	r.lastTS = now
	if _, err := r.index.Write(encodeRecord(start, now)); err != nil {
		return fmt.Errorf("console relay: write log index: %w", err)
	}
	return nil
}

func (r *relay) accept() {
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: try again
			continue
		}
		c := &client{conn: conn, done: make(chan struct{})}
		c.cond = sync.NewCond(&c.mu)
		r.mu.Lock()
		r.clients[c] = struct{}{}
		r.mu.Unlock()
		go r.write(c)
		go r.input(c)
	}
}

// input copies one client's keystrokes to the endpoint until the client leaves.
func (r *relay) input(c *client) {
	buf := make([]byte, 4096)
	for {
		n, err := c.conn.Read(buf)
		if n > 0 {
			r.inMu.Lock()
			_, werr := r.endpoint.Write(buf[:n])
			r.inMu.Unlock()
			if werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	r.drop(c)
}

// write sends queued output to one client. Once the client is closed it sends what is still
// queued (the hypervisor's last words, when the relay ends) and returns.
func (r *relay) write(c *client) {
	defer close(c.done)
	for {
		c.mu.Lock()
		for len(c.queue) == 0 && !c.closed {
			c.cond.Wait()
		}
		if len(c.queue) == 0 {
			c.mu.Unlock()
			return
		}
		q := c.queue
		c.queue, c.queued = nil, 0
		c.mu.Unlock()
		for _, p := range q {
			if _, err := c.conn.Write(p); err != nil {
				r.drop(c)
				return
			}
		}
	}
}

func (r *relay) broadcast(p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.clients {
		c.mu.Lock()
		if c.queued+len(p) > maxQueued {
			c.mu.Unlock()
			go r.drop(c) // drop takes r.mu
			continue
		}
		c.queue = append(c.queue, append([]byte(nil), p...))
		c.queued += len(p)
		c.cond.Signal()
		c.mu.Unlock()
	}
}

// drop disconnects a client; the relay goes on.
func (r *relay) drop(c *client) {
	r.mu.Lock()
	delete(r.clients, c)
	r.mu.Unlock()
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		c.cond.Signal()
		_ = c.conn.Close()
	}
	c.mu.Unlock()
}

// closeClients flushes what each client has queued (the hypervisor's last words), waiting
// at most a second for a slow one, and disconnects it.
func (r *relay) closeClients() {
	r.mu.Lock()
	cs := make([]*client, 0, len(r.clients))
	for c := range r.clients {
		cs = append(cs, c)
	}
	r.mu.Unlock()
	for _, c := range cs {
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		c.mu.Lock()
		c.closed = true
		c.cond.Signal()
		c.mu.Unlock()
		<-c.done
		_ = c.conn.Close()
	}
}
