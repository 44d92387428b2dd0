// Package relay holds a VM's console for every hypervisor backend: a detached process (a
// re-exec of the cocoon binary) that reads the guest console endpoint without pause, appends
// it to the console log with a timestamp index beside it, broadcasts it to every attached
// `vm console` client and copies their input back. It exits when the endpoint reports the
// hypervisor gone (EOF, EIO, ECONNRESET), so it never outlives the VM.
//
// Index format (IndexPath(log)): fixed 16-byte records, each two little-endian int64s: the log
// offset of a chunk and the time it was read (unix nanoseconds). One record per chunk read from
// the endpoint, but none within 10 ms of the previous record, so the index grows by at most
// 1.6 KB/s of continuous output and Since is exact to 10 ms. A torn final record (crash) is
// ignored.
package relay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Endpoint is where the relay reads/writes the guest console. Exactly one field is set.
//
// The relay ends when the endpoint does, so nothing but the hypervisor may hold the other
// side: with FD (a PTY master) the caller closes its copy of the master after Start and every
// copy of the slave except the hypervisor's; then the hypervisor's exit reaches the relay as
// EIO. With Dial the hypervisor's socket must not be the relay's Socket.
type Endpoint struct {
	// FD is an open stream (a PTY master or slave, one end of a socket pair), passed to the
	// relay process. A PTY a hypervisor allocated is opened by the caller, who can check it is
	// still that hypervisor's (see cloudhv): a PTY number is reused once its owner exits.
	FD   *os.File
	Dial string // a unix socket the hypervisor serves; the relay connects, retrying until DialTimeout
}

// Options configure one relay.
type Options struct {
	Endpoint    Endpoint
	Socket      string        // unix socket the relay serves to `vm console` clients (0600), created before Start returns
	Log         string        // console log, appended; timestamp index written beside it at IndexPath(Log)
	DialTimeout time.Duration // for Endpoint.Dial (default 10s)
}

// Environment of a relay process. The parent passes nothing else: the relay inherits no
// configuration by accident.
const (
	envRelay       = "_COCOON_CONSOLE_RELAY"
	envKind        = "_COCOON_RELAY_ENDPOINT" // fd, dial or pty
	envTarget      = "_COCOON_RELAY_TARGET"   // the dial or pty path
	envSocket      = "_COCOON_RELAY_SOCKET"
	envLog         = "_COCOON_RELAY_LOG"
	envDialTimeout = "_COCOON_RELAY_DIAL_TIMEOUT"
)

// Descriptors of a relay process: the pipe it reports readiness on, then the endpoint (kind fd).
const (
	readyFD    = 3
	endpointFD = 4
)

// readyOK is what the relay writes once its socket listens; anything else is an error text.
const readyOK = "ok"

// ProcessName is a relay's argv[0], for ps and pgrep.
const ProcessName = "cocoon-console-relay"

// startTimeout bounds how long Start waits for the relay to listen.
const startTimeout = 10 * time.Second

// IndexPath is the timestamp index kept beside the console log.
func IndexPath(log string) string { return log + ".idx" }

// Start launches a relay for o in its own session (stdin /dev/null, no terminal) and returns
// its PID once Socket accepts clients. The relay runs on after this process exits.
func Start(o Options) (int, error) {
	cfg, err := configOf(o)
	if err != nil {
		return 0, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("console relay: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command("/proc/self/exe")
	// argv is for ps and pgrep only (the relay reads its options from the environment).
	cmd.Args = []string{ProcessName, cfg.socket}
	cmd.Dir = "/"
	cmd.Env = cfg.env()
	cmd.ExtraFiles = []*os.File{pw}
	if o.Endpoint.FD != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, o.Endpoint.FD)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	_ = pw.Close() // the child holds its own copy; EOF on pr means it is gone
	if err != nil {
		return 0, fmt.Errorf("start console relay: %w", err)
	}
	// Reap it while this process lives; afterwards init does.
	ch := &child{proc: cmd.Process, exited: make(chan struct{})}
	started.Store(cmd.Process.Pid, ch)
	go func() {
		_ = cmd.Wait()
		started.CompareAndDelete(cmd.Process.Pid, ch)
		close(ch.exited)
	}()

	_ = pr.SetReadDeadline(time.Now().Add(startTimeout))
	msg, rerr := io.ReadAll(io.LimitReader(pr, 4096))
	if rerr == nil && string(msg) == readyOK {
		return cmd.Process.Pid, nil
	}
	Kill(cmd.Process.Pid)
	switch {
	case rerr != nil:
		return 0, fmt.Errorf("console relay for %s did not start: %w", o.Socket, rerr)
	case len(msg) == 0:
		return 0, fmt.Errorf("console relay for %s exited during startup (is relay.Init called first in main?)", o.Socket)
	}
	return 0, fmt.Errorf("console relay for %s: %s", o.Socket, strings.TrimSpace(string(msg)))
}

// started are the relays this process started, by PID, for Kill.
var started sync.Map // int → *child

type child struct {
	proc   *os.Process // signals go through its pidfd: never to a reused PID
	exited chan struct{}
}

// Kill ends a relay this process started (e.g. when the launch it belongs to fails) and waits
// until it is gone. PIDs of other processes are ignored: Kill never signals a stranger.
func Kill(pid int) {
	v, ok := started.LoadAndDelete(pid)
	if !ok {
		return
	}
	c := v.(*child)
	_ = c.proc.Kill()
	<-c.exited
}

// config is the validated form of Options that crosses the exec boundary.
type config struct {
	kind        string // fd, dial or pty
	target      string
	socket      string
	log         string
	dialTimeout time.Duration
}

func configOf(o Options) (config, error) {
	c := config{socket: o.Socket, log: o.Log, dialTimeout: o.DialTimeout}
	if c.dialTimeout <= 0 {
		c.dialTimeout = 10 * time.Second
	}
	set := 0
	if o.Endpoint.FD != nil {
		c.kind, set = "fd", set+1
	}
	if o.Endpoint.Dial != "" {
		c.kind, c.target, set = "dial", o.Endpoint.Dial, set+1
	}
	if set != 1 {
		return c, fmt.Errorf("console relay: set exactly one of Endpoint.FD, Endpoint.Dial (%d set)", set)
	}
	return c, c.validate()
}

func (c config) validate() error {
	for _, p := range []struct{ name, path string }{{"socket", c.socket}, {"log", c.log}, {"endpoint", c.target}} {
		if p.path == "" && p.name == "endpoint" && c.kind == "fd" {
			continue
		}
		if p.path == "" || !filepath.IsAbs(p.path) || strings.ContainsRune(p.path, 0) {
			return fmt.Errorf("console relay: %s path %q must be absolute", p.name, p.path)
		}
	}
	// sun_path holds 107 bytes and a NUL.
	if len(c.socket) > 107 || (c.kind == "dial" && len(c.target) > 107) {
		return fmt.Errorf("console relay: socket path longer than 107 bytes: use a shorter run dir")
	}
	switch c.kind {
	case "fd", "dial":
	default:
		return fmt.Errorf("console relay: unknown endpoint kind %q", c.kind)
	}
	return nil
}

func (c config) env() []string {
	return []string{envRelay + "=1", envKind + "=" + c.kind, envTarget + "=" + c.target,
		envSocket + "=" + c.socket, envLog + "=" + c.log, envDialTimeout + "=" + c.dialTimeout.String()}
}

func configFromEnv() (config, error) {
	c := config{kind: os.Getenv(envKind), target: os.Getenv(envTarget), socket: os.Getenv(envSocket), log: os.Getenv(envLog)}
	d, err := time.ParseDuration(os.Getenv(envDialTimeout))
	if err != nil || d <= 0 {
		return c, fmt.Errorf("console relay: bad %s %q", envDialTimeout, os.Getenv(envDialTimeout))
	}
	c.dialTimeout = d
	return c, c.validate()
}

// Init runs the relay and exits when this process was started as one by Start; otherwise it
// returns at once. Call it first in main (and in TestMain of packages whose tests start relays).
func Init() {
	if os.Getenv(envRelay) != "1" {
		return
	}
	os.Exit(runFromEnv())
}

func runFromEnv() int {
	ready := os.NewFile(readyFD, "ready")
	fail := func(err error) int {
		if ready != nil {
			_, _ = io.WriteString(ready, err.Error())
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	c, err := configFromEnv()
	if err != nil {
		return fail(err)
	}
	var fd *os.File
	if c.kind == "fd" {
		if fd = os.NewFile(endpointFD, "endpoint"); fd == nil {
			return fail(errors.New("console relay: endpoint fd 4 is not open"))
		}
	}
	r, err := newRelay(c, fd)
	if err != nil {
		return fail(err)
	}
	_, _ = io.WriteString(ready, readyOK)
	_ = ready.Close()
	ready = nil
	// The relay is the cocoon binary re-executed: every package's initialisation ran, and
	// its garbage would stay resident for the VM's life, in every VM.
	debug.FreeOSMemory()
	if err := r.run(); err != nil {
		fmt.Fprintln(os.Stderr, err) // stderr is /dev/null unless a caller chose otherwise
		return 1
	}
	return 0
}
