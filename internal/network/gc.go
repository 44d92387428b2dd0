package network

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/cocoonstack/cocoon/internal/network/tap"
)

// bridgeTapName matches bridge-mode TAPs and captures the VM ID prefix.
var bridgeTapName = regexp.MustCompile(`^` + bridgeTapPrefix + `([A-Za-z0-9_.-]{8})-[0-9]+$`)

// GC tears down the networks of VMs not in live and returns what it removed. Only VMs this
// root knows of (CNI records or libcni cache entries under <root>/cni) are considered: another
// Cocoon root on the same host owns its own cocoon-* namespaces. Bridge-mode TAPs are matched
// by name in the current netns.
func (m *Manager) GC(ctx context.Context, live map[string]struct{}) ([]string, error) {
	ids, err := m.records.VMIDs(ctx)
	if err != nil {
		return nil, err
	}
	cached, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("read CNI cache: %w", err)
	}
	for _, c := range cached {
		if !slices.Contains(ids, c.ContainerID) {
			ids = append(ids, c.ContainerID)
		}
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		if _, ok := live[id]; ok {
			continue
		}
		if err := checkVMID(id); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := m.teardownCNI(ctx, id, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "network of VM "+id)
	}
	taps, err := m.gcBridgeTaps(live)
	return append(removed, taps...), errors.Join(append(errs, err)...)
}

func (m *Manager) gcBridgeTaps(live map[string]struct{}) ([]string, error) {
	prefixes := map[string]bool{}
	for id := range live {
		if len(id) >= 8 {
			prefixes[id[:8]] = true
		}
	}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var removed []string
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		match := bridgeTapName.FindStringSubmatch(name)
		if match == nil || prefixes[match[1]] {
			continue
		}
		if _, ok := l.(*netlink.Tuntap); !ok {
			continue
		}
		if err := tap.Delete(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "bridge TAP "+name)
	}
	return removed, errors.Join(errs...)
}
