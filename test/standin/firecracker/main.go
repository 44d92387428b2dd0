// Command firecracker is a stand-in for the Firecracker binary in tests (no KVM needed). It
// accepts Firecracker's command line, serves the API on --api-sock through apicheck (every
// request is validated against firecracker-swagger.yaml and appended to $COCOON_STANDIN_LOG),
// keeps the microVM's state (not started, running, paused; devices), plays the guest's serial
// console on its stdin/stdout (a banner line, then it echoes input), writes and loads real
// snapshot files (vmstate, mem), and exits on SendCtrlAltDel as a guest with reboot=k does.
//
// Build: go build -o <dir>/firecracker ./test/standin/firecracker
package main

import (
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

// version is what --version reports; COCOON_STANDIN_VERSION overrides it (tests of the
// "too old" refusal).
const version = "1.14.0"

func main() {
	o, err := parseArgs(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
	if o.version {
		v := version
		if env := os.Getenv("COCOON_STANDIN_VERSION"); env != "" {
			v = env
		}
		fmt.Printf("Firecracker v%s\n\nSupported snapshot data format versions: v8.0.0\n", v)
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		logLine(o, "Error: "+err.Error())
		os.Exit(1)
	}
}

func run(o options) error {
	if o.logPath != "" {
		// Like FC: the log must exist; it is opened for writing, not created.
		f, err := os.OpenFile(o.logPath, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("failed to open the log file %s: %w", o.logPath, err)
		}
		f.Close()
	}
	if _, err := os.Lstat(o.apiSock); err == nil {
		return fmt.Errorf("failed to open the API socket at %s: address in use", o.apiSock)
	}
	checker, err := apicheck.LoadFirecracker()
	if err != nil {
		return err
	}
	ln, err := net.Listen("unix", o.apiSock)
	if err != nil {
		return fmt.Errorf("failed to open the API socket at %s: %w", o.apiSock, err)
	}
	requestLog := os.Getenv("COCOON_STANDIN_LOG")
	if requestLog == "" {
		requestLog = os.DevNull
	}
	vm := newVM(o)
	// FC puts a terminal on its stdin into raw mode: the guest's console sees every key.
	if term.IsTerminal(0) {
		if st, err := term.MakeRaw(0); err == nil {
			defer func() { _ = term.Restore(0, st) }()
		}
	}
	go vm.echo()
	apicheck.Serve(ln, checker, requestLog, vm.handler())

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	select {
	case code := <-vm.exit:
		logLine(o, fmt.Sprintf("Vmm is stopping (exit code %d)", code))
		if code != 0 {
			return errors.New("guest stopped abnormally")
		}
	case s := <-sigs:
		logLine(o, "Shutting down VM after intercepting signal "+s.String())
	}
	return nil
}

// logLine appends a line to FC's own log (--log-path), as its logger would.
func logLine(o options, msg string) {
	if o.logPath == "" {
		return
	}
	f, err := os.OpenFile(o.logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		log.Printf("log: %v", err)
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "[%s:main] %s\n", o.id, msg)
}
