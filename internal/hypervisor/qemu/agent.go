package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/lock"
)

// The guest agent's channel is a pool of virtio-serial ports, each on its own unix socket
// (QEMU has no vhost-vsock here). A virtio-serial socket serves one host client at a time and
// carries one byte stream, so instead of multiplexing sessions over one port through a relay
// process that would have to outlive commands, every session takes a whole port: a CLI process
// flocks a free port's lock file, connects, and runs exactly the ecosystem's one-exec-per-
// connection protocol on it; the agent serves every port independently. Closing the socket
// is the end of the session (the guest reads EOF and kills what the session started). The
// pool size caps concurrent sessions per VM; more wait for a free port.
const agentPorts = 16

// agentPollInterval is how often a session waiting for a free port retries.
const agentPollInterval = 20 * time.Millisecond

func agentDir(runDir string) string { return filepath.Join(runDir, "agent") }
func agentSocket(runDir string, i int) string {
	return filepath.Join(agentDir(runDir), strconv.Itoa(i)+".sock")
}
func agentLock(runDir string, i int) string {
	return filepath.Join(agentDir(runDir), strconv.Itoa(i)+".lock")
}
func agentChardev(i int) string { return "agent" + strconv.Itoa(i) }

// agent adds the virtio-serial controller and its ports (layout.AgentPorts of them).
func (b *argBuilder) agent() {
	n := b.layout.AgentPorts
	if n == 0 {
		return
	}
	b.add("-device", fmt.Sprintf("virtio-serial-pci,id=agentser,max_ports=%d", n+1))
	for i := range n {
		b.add("-chardev", fmt.Sprintf("socket,id=%s,path=%s,server=on,wait=off", agentChardev(i), optEscape(agentSocket(b.spec.RunDir, i))),
			"-device", fmt.Sprintf("virtserialport,bus=agentser.0,nr=%d,chardev=%s,name=%s%d", i+1, agentChardev(i), proto.SerialPortPrefix, i))
	}
}

// prepareAgentDir makes the socket directory QEMU binds into.
func prepareAgentDir(runDir string, l layout) error {
	if l.AgentPorts == 0 {
		return nil
	}
	if err := os.MkdirAll(agentDir(runDir), 0o700); err != nil {
		return fmt.Errorf("create agent socket dir: %w", err)
	}
	return nil
}

// removeAgentSockets deletes the sockets a stopped QEMU left (lock files stay: flock binds to
// their inodes).
func removeAgentSockets(runDir string) error {
	socks, _ := filepath.Glob(filepath.Join(agentDir(runDir), "*.sock"))
	var errs []error
	for _, s := range socks {
		errs = append(errs, removeIfExists(s))
	}
	return errors.Join(errs...)
}

// AgentConnected implements hypervisor.AgentChannel: the agent holds all its ports open, so
// QEMU's view of port 0's guest side ("frontend-open") says whether an agent is there.
func (b *Backend) AgentConnected(ctx context.Context, vm hypervisor.VMRef) (bool, error) {
	l, err := readLayout(vm.RunDir)
	if err != nil {
		return false, err
	}
	if l.AgentPorts == 0 {
		return false, nil
	}
	c, err := dialQMPWhenFree(ctx, qmpPath(vm.RunDir))
	if err != nil {
		return false, fmt.Errorf("QMP: %w", err)
	}
	defer c.Close()
	var devs []struct {
		Label        string `json:"label"`
		FrontendOpen bool   `json:"frontend-open"`
	}
	if err := c.execute("query-chardev", nil, &devs); err != nil {
		return false, err
	}
	for _, d := range devs {
		if strings.HasPrefix(d.Label, "agent") && d.FrontendOpen {
			return true, nil
		}
	}
	return false, nil
}

// DialAgent implements hypervisor.AgentChannel: it takes the first free port of the pool
// (starting at a random one, so concurrent callers spread) and connects to it.
func (b *Backend) DialAgent(ctx context.Context, vm hypervisor.VMRef) (io.ReadWriteCloser, error) {
	l, err := readLayout(vm.RunDir)
	if err != nil {
		return nil, err
	}
	n := l.AgentPorts
	if n == 0 {
		return nil, errors.New("the VM was started without an agent channel")
	}
	locks := make([]*lock.Lock, n) // one each: a failed TryLock keeps its file open for the next try
	for i := range locks {
		locks[i] = lock.New(agentLock(vm.RunDir, i))
	}
	for {
		first := rand.IntN(n)
		for k := range n {
			i := (first + k) % n
			if locks[i].TryLock() != nil {
				continue
			}
			var d net.Dialer
			conn, err := d.DialContext(ctx, "unix", agentSocket(vm.RunDir, i))
			if err != nil {
				_ = locks[i].Unlock()
				return nil, fmt.Errorf("connect agent port %d: %w", i, err)
			}
			return &portConn{Conn: conn, lock: locks[i]}, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("all %d agent ports of the VM are busy: %w", n, ctx.Err())
		case <-time.After(agentPollInterval):
		}
	}
}

// portConn releases its port's lock when closed.
type portConn struct {
	net.Conn
	lock *lock.Lock
}

func (c *portConn) Close() error {
	err := c.Conn.Close()
	_ = c.lock.Unlock()
	return err
}

// dialQMPWhenFree retries while QMP's one-deep listen queue is full (EAGAIN): many concurrent
// execs each ask QMP once, briefly.
func dialQMPWhenFree(ctx context.Context, path string) (*qmpClient, error) {
	for {
		c, err := dialQMP(ctx, path)
		if !errors.Is(err, syscall.EAGAIN) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Duration(5+rand.IntN(20)) * time.Millisecond):
		}
	}
}

// SharedStream tells the agent client that the port's byte stream outlives this connection
// (it then starts with a newline that ends any line a previous client cut off).
func (c *portConn) SharedStream() bool { return true }
