// Command cloud-hypervisor is a stand-in for Cloud Hypervisor in tests: it accepts the
// command line the real binary accepts (and refuses what it refuses), serves the REST API on
// --api-socket through apicheck (every request checked against the official API definition,
// recorded to $COCOON_STANDIN_LOG), keeps the VM's state, devices, vCPUs and memory, offers
// a console (a PTY, or the serial port's socket) that prints a banner and echoes input, and
// writes and reads real snapshot files (config.json, state.json, memory-ranges).
//
// Like the real binary, vm.shutdown stops the VM but leaves the process up; a guest power-off
// (vm.power-button while running) ends the process.
package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/cocoonstack/cocoon/test/standin/apicheck"
)

// defaultVersion is what --version prints unless $COCOON_STANDIN_VERSION says otherwise.
const defaultVersion = "51.0.0"

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	o, err := parseArgs(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	if o.version {
		v := os.Getenv("COCOON_STANDIN_VERSION")
		if v == "" {
			v = defaultVersion
		}
		fmt.Printf("cloud-hypervisor v%s\n", v)
		return 0
	}
	if o.apiSocket == "" {
		fmt.Fprintln(os.Stderr, "Error: this stand-in needs --api-socket")
		return 1
	}
	checker, err := apicheck.LoadCloudHypervisor()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		return 1
	}
	logPath := os.Getenv("COCOON_STANDIN_LOG")
	if logPath == "" {
		logPath = os.DevNull
	}
	v := newVMM()
	if o.vm != nil {
		if err := v.boot(o.vm); err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			return 1
		}
	}
	ln, err := net.Listen("unix", o.apiSocket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error: cannot bind the API socket:", err)
		return 1
	}
	srv := apicheck.Serve(ln, checker, logPath, v.handler())
	slog.Info("cloud-hypervisor stand-in ready", "api", o.apiSocket, "pid", os.Getpid())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	code := 0
	select {
	case s := <-sig:
		fmt.Fprintln(os.Stderr, "cloud-hypervisor stand-in: terminated by", s)
		code = 128 + int(s.(syscall.Signal))
	case <-v.exit:
		fmt.Fprintln(os.Stderr, "cloud-hypervisor stand-in: guest powered off")
	}
	_ = srv.Close()
	_ = os.Remove(o.apiSocket)
	v.close()
	return code
}
