// Command cocoon-agent is Cocoon's guest agent: it runs inside a VM and serves exec, file copy
// and TCP tunnels to the host over virtio-serial ports named org.cocoonstack.agent.N (QEMU;
// each port carries one session at a time, the host picks a free port per session) and on
// vsock port 1024 (Cloud Hypervisor, Firecracker; one session per connection).
//
// The engine delivers it on a read-only layer (OCI images) or through cloud-init (cloud
// images); it must stay a small static binary (CGO off) with no guest dependencies.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"runtime/debug"
	"syscall"

	"golang.org/x/sys/unix"
)

const lockPath = "/run/cocoon-agent.lock"

func main() {
	background := flag.Bool("background", false, "detach and log to /run/cocoon-agent.log (for init systems without services)")
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmsgprefix)
	log.SetPrefix("cocoon-agent: ")
	if *background {
		if err := detach(); err != nil {
			log.Fatal(err)
		}
		return
	}
	if !singleInstance() {
		log.Print("another agent is running")
		return
	}
	// Transfers allocate a frame's worth per frame and the live heap is small: collecting at
	// 4x it instead of 2x halves the GC work, which is dear under TCG, for a few MiB more.
	debug.SetGCPercent(400)
	syncClock() // an agent that starts in a clone starts with the snapshot's clock
	go serveVsock()
	serveSerial()
}

// singleInstance holds a lock for the process lifetime, so hooks that may run more than once
// (a respawned login shell) start one agent.
func singleInstance() bool {
	_ = os.MkdirAll("/run", 0o755)
	fd, err := unix.Open(lockPath, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		log.Printf("lock %s: %v (continuing without)", lockPath, err)
		return true
	}
	return unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) == nil // fd stays open: the lock lives with us
}

func detach() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile("/run/cocoon-agent.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	return cmd.Process.Release()
}
