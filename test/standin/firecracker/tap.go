package main

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// openTap attaches to the TAP name in this process's network namespace exactly as Firecracker
// does (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, no IFF_MULTI_QUEUE): it fails when the TAP does
// not exist here, is multi-queue, or is single-queue and already attached by someone else.
func openTap(name string) (*os.File, error) {
	// TUNSETIFF would make a new TAP of that name (root may): the TAP must already be here,
	// set up by the caller in this netns.
	if _, err := net.InterfaceByName(name); err != nil {
		return nil, fmt.Errorf("open tap device %s: %w", name, err)
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open tap device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}
