// Package tap creates virtio-ready TAP devices, opens their queues for a hypervisor and wires a
// TAP to a peer link with tc redirects.
//
// Every function acts in the network namespace of the calling OS thread: callers that target
// another namespace run them inside ns.Do / ns.WithNetNSPath.
package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// MaxQueues is the kernel's limit of queues per TAP (MAX_TAP_QUEUES).
const MaxQueues = 256

const (
	txQueueLen = 10000 // deep device queue: bursts from the guest are not dropped at the TAP
	groMaxSize = 65536
)

// flags are the TUNSETIFF flags for a TAP with queues queue pairs. A single-queue TAP is created
// without IFF_MULTI_QUEUE because the kernel refuses to attach with mismatching flags, and
// hypervisors that open the TAP by name themselves (Firecracker) never ask for multi-queue.
func flags(queues int) netlink.TuntapFlag {
	f := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR
	if queues > 1 {
		f |= netlink.TUNTAP_MULTI_QUEUE
	}
	return f
}

// Create makes a persistent TAP named name, to be opened later with queues queue pairs, sets
// its MTU (when mtu > 0) and brings it up. On error nothing is left behind.
func Create(name string, queues, mtu int) (netlink.Link, error) {
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("create TAP %s: %d queues out of range 1-%d", name, queues, MaxQueues)
	}
	t := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: name},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     flags(queues),
		Queues:    1,
	}
	if err := netlink.LinkAdd(t); err != nil {
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	// The device is persistent: the creator's queue is closed so only the hypervisor holds queues.
	for _, f := range t.Fds {
		f.Close() //nolint:errcheck
	}
	link, err := configure(name, mtu)
	if err != nil {
		if derr := Delete(name); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	return link, nil
}

func configure(name string, mtu int) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up TAP %s: %w", name, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("set MTU %d on TAP %s: %w", mtu, name, err)
		}
	}
	// Tuning only helps throughput; a kernel that refuses it still forwards packets.
	if err := netlink.LinkSetTxQLen(link, txQueueLen); err != nil {
		slog.Debug("set TAP txqueuelen", "tap", name, "err", err)
	}
	if err := netlink.LinkSetGROMaxSize(link, groMaxSize); err != nil {
		slog.Debug("set TAP GRO max size", "tap", name, "err", err)
	}
	// A TAP is the VM's wire, not a host interface: no IPv6 link-local, no host chatter on it.
	if err := netlink.LinkSetIP6AddrGenMode(link, nl.IN6_ADDR_GEN_MODE_NONE); err != nil {
		slog.Debug("stop IPv6 address generation on TAP", "tap", name, "err", err)
	}
	if err := setNoQueue(link); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("bring up TAP %s: %w", name, err)
	}
	return netlink.LinkByName(name)
}

// Delete removes the link name; a missing link is not an error.
func Delete(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("look up %s: %w", name, err)
	}
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

// Open attaches queues new queues to the existing TAP name and returns their fds, ready to be
// handed to a hypervisor process. The fds keep working in any network namespace.
func Open(name string, queues int) ([]*os.File, error) {
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("open TAP %s: %d queues out of range 1-%d", name, queues, MaxQueues)
	}
	// Attaching needs the device's own IFF_MULTI_QUEUE setting, whatever the caller believes.
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up TAP %s: %w", name, err)
	}
	t, ok := link.(*netlink.Tuntap)
	if !ok || t.Mode != netlink.TUNTAP_MODE_TAP {
		return nil, fmt.Errorf("open TAP %s: the link is a %s, not a TAP", name, link.Type())
	}
	multi := t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0
	if !multi && queues > 1 {
		return nil, fmt.Errorf("open TAP %s: it is single-queue, cannot open %d queues: recreate the VM's network with more queues", name, queues)
	}
	want := flags(1)
	if multi {
		want |= netlink.TUNTAP_MULTI_QUEUE
	}
	files := make([]*os.File, 0, queues)
	fail := func(err error) ([]*os.File, error) {
		for _, f := range files {
			f.Close() //nolint:errcheck
		}
		return nil, err
	}
	for i := range queues {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("open /dev/net/tun for %s: %w", name, err))
		}
		f, err := attach(fd, name, want)
		if err != nil {
			unix.Close(fd) //nolint:errcheck
			return fail(fmt.Errorf("open queue %d of TAP %s: %w", i, name, err))
		}
		files = append(files, f)
	}
	return files, nil
}

func attach(fd int, name string, f netlink.TuntapFlag) (*os.File, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	ifr.SetUint16(uint16(netlink.TUNTAP_MODE_TAP) | uint16(f))
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, fmt.Errorf("TUNSETIFF: %w", err)
	}
	// Non-blocking before wrapping, so the Go runtime polls the fd (deadlines work) instead of
	// parking a thread in read(2). Hypervisors set their own mode on the fds they receive.
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// setNoQueue makes the TAP transmit without a qdisc. The tun driver never pushes back (it drops
// when a queue's ring is full), so a qdisc only adds a copy of the queue: with the default one a
// multi-queue TAP gets a pfifo_fast per possible queue (256), each sized by txqueuelen, which
// costs tens of MB of kernel memory and ~200 ms to bring the TAP up.
func setNoQueue(link netlink.Link) error {
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: link.Attrs().Index, Parent: netlink.HANDLE_ROOT},
		QdiscType:  "noqueue",
	}
	if err := netlink.QdiscAdd(q); err != nil {
		return fmt.Errorf("set noqueue qdisc on TAP %s: %w", link.Attrs().Name, err)
	}
	return nil
}
