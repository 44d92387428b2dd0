package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/creack/pty"
	"golang.org/x/term"
)

// guestConsole plays the guest's console: the virtio-console on a PTY (--console pty) or the
// serial port on a socket (--serial socket=…). It prints a banner line for each lifecycle
// event and echoes whatever it reads, so attach and logs see real traffic.
type guestConsole struct {
	mu     sync.Mutex
	master *os.File // PTY master (CH's side)
	slave  *os.File // held open so the master never reads EIO between clients
	ln     net.Listener
	conns  []net.Conn
	name   string
}

// openConsole sets up c's console device and records the PTY path in c, as CH does.
func openConsole(c *vmConfig) (*guestConsole, error) {
	g := &guestConsole{name: "hvc0"}
	if c.Console.Mode == "Pty" {
		m, s, err := pty.Open()
		if err != nil {
			return nil, fmt.Errorf("open console PTY: %w", err)
		}
		if _, err := term.MakeRaw(int(s.Fd())); err != nil {
			m.Close()
			s.Close()
			return nil, fmt.Errorf("console PTY raw mode: %w", err)
		}
		g.master, g.slave = m, s
		c.Console.File = s.Name()
		go g.echo(m, m)
	}
	if c.Serial.Mode == "Socket" {
		g.name = "ttyS0"
		ln, err := net.Listen("unix", c.Serial.Socket)
		if err != nil {
			g.close()
			return nil, fmt.Errorf("serial socket: %w", err)
		}
		g.ln = ln
		go g.accept()
	}
	return g, nil
}

func (g *guestConsole) accept() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.conns = append(g.conns, c)
		g.mu.Unlock()
		fmt.Fprintf(c, "cloud-hypervisor stand-in %s: connected\r\n", g.name)
		go g.echo(c, c)
	}
}

// echo copies input back, as a guest shell with echo on would.
func (g *guestConsole) echo(r io.Reader, w io.Writer) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			g.mu.Lock()
			_, _ = w.Write(buf[:n])
			g.mu.Unlock()
		}
		if err != nil {
			return
		}
	}
}

// banner writes one line to every console endpoint.
func (g *guestConsole) banner(event string) {
	if g == nil {
		return
	}
	line := fmt.Sprintf("cloud-hypervisor stand-in %s: guest %s\r\n", g.name, event)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.master != nil {
		_, _ = g.master.WriteString(line)
	}
	for _, c := range g.conns {
		_, _ = io.WriteString(c, line)
	}
}

func (g *guestConsole) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range []io.Closer{g.master, g.slave, g.ln} {
		if f != nil && f != (*os.File)(nil) {
			_ = f.Close()
		}
	}
	for _, c := range g.conns {
		_ = c.Close()
	}
}
