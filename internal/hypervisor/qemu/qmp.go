package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// qmpClient is one QMP session over QEMU's unix socket.
//
// Hand-written on purpose: the only maintained Go QMP library, digitalocean/go-qemu, has no
// tagged releases, takes no context (its SocketMonitor uses a fixed timeout), streams events
// through a goroutine that must be drained, and drags in go-libvirt for its libvirt drivers.
// The subset we need (greeting, capabilities negotiation, execute-with-id, skipping events) is
// a few dozen lines over encoding/json.
//
// QEMU serves one QMP client at a time on a socket, so every operation opens a session, does
// its work and closes it; a session held open would lock every other CLI process out.
type qmpClient struct {
	conn   net.Conn
	dec    *json.Decoder
	nextID int
	stop   func() bool
	events []qmpMessage // events read while waiting for replies, for waitEvent
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP"`
	Event  string          `json:"event"`
	Data   json.RawMessage `json:"data"`
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *qmpError       `json:"error"`
}

// dialQMP connects, reads the greeting and leaves capabilities negotiation mode. The session
// obeys ctx: cancellation or its deadline interrupts any pending read or write.
func dialQMP(ctx context.Context, path string) (*qmpClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c := &qmpClient{conn: conn, dec: json.NewDecoder(conn)}
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	c.stop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })

	var greeting qmpMessage
	if err := c.dec.Decode(&greeting); err != nil {
		c.Close()
		return nil, fmt.Errorf("read QMP greeting: %w", err)
	}
	if greeting.QMP == nil {
		c.Close()
		return nil, fmt.Errorf("%s does not speak QMP", path)
	}
	if err := c.execute("qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// execute runs one command and decodes its return value into result (when non-nil).
// Asynchronous events arriving meanwhile are kept for waitEvent.
func (c *qmpClient) execute(command string, args, result any) error {
	return c.executeWithFile(command, args, nil, result)
}

// executeWithFile is execute that also passes f's descriptor in the same socket message
// (SCM_RIGHTS), as QMP's getfd and add-fd expect.
func (c *qmpClient) executeWithFile(command string, args any, f *os.File, result any) error {
	c.nextID++
	id := fmt.Sprintf("cocoon-%d", c.nextID)
	req, err := json.Marshal(struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id})
	if err != nil {
		return fmt.Errorf("encode QMP %s: %w", command, err)
	}
	if f == nil {
		_, err = c.conn.Write(req)
	} else {
		_, _, err = c.conn.(*net.UnixConn).WriteMsgUnix(req, unix.UnixRights(int(f.Fd())), nil)
	}
	if err != nil {
		return fmt.Errorf("send QMP %s: %w", command, err)
	}
	for {
		var msg qmpMessage
		if err := c.dec.Decode(&msg); err != nil {
			return fmt.Errorf("read QMP %s reply: %w", command, err)
		}
		if msg.Event != "" {
			c.events = append(c.events, msg)
			continue
		}
		if msg.ID != id {
			continue
		}
		if msg.Error != nil {
			return fmt.Errorf("QMP %s: %s: %s", command, msg.Error.Class, msg.Error.Desc)
		}
		if result == nil {
			return nil
		}
		if err := json.Unmarshal(msg.Return, result); err != nil {
			return fmt.Errorf("decode QMP %s reply: %w", command, err)
		}
		return nil
	}
}

// waitEvent returns the first event, already received or still to come, for which match is
// true; the session's context bounds the wait.
func (c *qmpClient) waitEvent(match func(qmpMessage) bool) (qmpMessage, error) {
	for i, ev := range c.events {
		if match(ev) {
			c.events = append(c.events[:i], c.events[i+1:]...)
			return ev, nil
		}
	}
	for {
		var msg qmpMessage
		if err := c.dec.Decode(&msg); err != nil {
			return qmpMessage{}, fmt.Errorf("wait for QMP event: %w", err)
		}
		if msg.Event == "" {
			continue // a reply nobody waits for
		}
		if match(msg) {
			return msg, nil
		}
		c.events = append(c.events, msg)
	}
}

func (c *qmpClient) Close() {
	c.stop()
	_ = c.conn.Close()
}
