package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
)

// hybridVsock plays CH's hybrid vsock device: a unix socket where a host client writes
// "CONNECT <port>\n" and gets "OK <host port>\n" when the guest listens on that port. No
// guest program listens in the stand-in, so every CONNECT is refused the way CH refuses it:
// the connection is closed without an answer.
type hybridVsock struct{ ln net.Listener }

func openVsock(c *vmConfig) (*hybridVsock, error) {
	if c.Vsock == nil {
		return nil, nil
	}
	ln, err := net.Listen("unix", c.Vsock.Socket)
	if err != nil {
		return nil, fmt.Errorf("vsock socket: %w", err)
	}
	v := &hybridVsock{ln: ln}
	go v.accept()
	return v, nil
}

func (v *hybridVsock) accept() {
	for {
		conn, err := v.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer conn.Close()
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err == nil && !strings.HasPrefix(line, "CONNECT ") {
				fmt.Fprintln(conn, "unexpected request:", strings.TrimSpace(line))
			}
		}()
	}
}

func (v *hybridVsock) close() {
	if v != nil {
		_ = v.ln.Close()
	}
}
