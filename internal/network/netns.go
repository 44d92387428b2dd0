package network

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are bind-mounted (iproute2's and
// vishvananda/netns' location; /var/run/netns is the same directory).
const netnsDir = "/run/netns"

const netnsPrefix = "cocoon-"

func netnsPath(vmID string) string { return filepath.Join(netnsDir, netnsPrefix+vmID) }

// createNetns creates the named network namespace at path (a bind mount, like `ip netns add`).
// The creating thread is switched back afterwards; if that fails it stays locked, so the Go
// runtime retires it instead of reusing a thread in the wrong namespace.
func createNetns(path string) error {
	name := filepath.Base(path)
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("create netns %s: get current netns: %w", name, err)
			return
		}
		defer orig.Close() //nolint:errcheck
		h, err := netns.NewNamed(name)
		if err == nil {
			h.Close() //nolint:errcheck
		}
		if serr := netns.Set(orig); serr != nil {
			errc <- errors.Join(err, fmt.Errorf("create netns %s: switch back: %w", name, serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	err := <-errc
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fs.ErrExist):
		return fmt.Errorf("create netns %s: it already exists: remove the leftover with 'cocoon gc' or 'ip netns del %s'", name, name)
	}
	removeStaleNetnsFile(path) // NewNamed leaves the file behind when the bind mount fails
	return fmt.Errorf("create netns %s: %w", name, err)
}

// deleteNetns deletes the namespace at path; a missing one is not an error. The links inside
// are deleted first so that the host side of every veth is gone when this returns, not
// whenever the kernel destroys the namespace.
func deleteNetns(path string) error {
	err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		links, err := retryDump(netlink.LinkList)
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Attrs().Flags&net.FlagLoopback != 0 {
				continue
			}
			if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("delete %s: %w", l.Attrs().Name, err)
			}
		}
		return nil
	})
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	if err != nil && !errors.As(err, &notExist) && !errors.As(err, &notNS) {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", path, err)
	}
	return nil
}

// removeStaleNetnsFile removes path when it is a plain file rather than a mounted namespace.
func removeStaleNetnsFile(path string) {
	var notNS ns.NSPathNotNSErr
	if errors.As(ns.IsNSorErr(path), &notNS) {
		os.Remove(path) //nolint:errcheck // best effort: DEL and deleteNetns report what remains
	}
}

// retryDump repeats a netlink dump the kernel interrupted because the table changed while it
// was read; netlink returns partial results with ErrDumpInterrupted.
func retryDump[T any](dump func() ([]T, error)) ([]T, error) {
	for range 4 {
		out, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return dump()
}
