package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// HybridVsock dials the guest agent through a hybrid vsock unix socket, as Cloud Hypervisor and
// Firecracker expose it (no kernel vhost-vsock): connect, send "CONNECT <port>\n", expect
// "OK <host port>\n", then the stream is the guest's port. It is the transport those backends
// supply; each session is its own connection, as the ecosystem's agent expects.
func HybridVsock(socket string, port int) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", socket)
		if err != nil {
			return nil, err
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		defer stop()
		// The hypervisor may close before the request is written (nothing listens on the guest
		// port): that is the same refusal as a missing OK.
		if _, err := fmt.Fprintf(conn, "CONNECT %d\n", port); err != nil {
			conn.Close()
			return nil, fmt.Errorf("vsock CONNECT %d (no agent listening in the guest?): %w", port, err)
		}
		br := bufio.NewReader(conn)
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "OK ") {
			conn.Close()
			if err == nil {
				err = fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
			}
			return nil, fmt.Errorf("vsock CONNECT %d (no agent listening in the guest?): %w", port, err)
		}
		_ = conn.SetDeadline(time.Time{})
		return &bufferedConn{Reader: br, Conn: conn}, nil
	}
}

// bufferedConn reads through the reader that consumed the handshake line.
type bufferedConn struct {
	io.Reader
	net.Conn
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.Reader.Read(p) }
