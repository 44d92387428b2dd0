package main

import (
	"log"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/cocoonstack/cocoon/internal/agent/proto"
)

// serveVsock serves one session stream per connection on vsock port 1024, the transport of
// Cloud Hypervisor and Firecracker (their hybrid vsock). Guests without vsock skip it.
func serveVsock() {
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return // no vsock transport in this guest
	}
	if err := unix.Bind(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: proto.VsockPort}); err != nil {
		log.Printf("vsock bind port %d: %v", proto.VsockPort, err)
		unix.Close(fd)
		return
	}
	if err := unix.Listen(fd, 64); err != nil {
		log.Printf("vsock listen: %v", err)
		unix.Close(fd)
		return
	}
	log.Printf("serving vsock port %d", proto.VsockPort)
	for n := 0; ; n++ {
		cfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		if err != nil {
			log.Printf("vsock accept: %v", err)
			continue
		}
		syncClock()
		c := os.NewFile(uintptr(cfd), "vsock")
		go func() {
			defer c.Close()
			serveStream("vsock#"+strconv.Itoa(n), c, c, nil)
		}()
	}
}
