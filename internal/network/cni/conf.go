// Package cni knows the CNI side of Cocoon's networking: the conflists of a configuration
// directory, the plugin binaries they need, the result of an ADD, and the per-NIC records kept
// under <root>/cni/db.
package cni

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Catalog is the set of conflists found in one directory, in file-name order.
type Catalog struct {
	dir   string
	lists []*libcni.NetworkConfigList
}

// LoadCatalog parses every *.conflist in dir (other extensions are ignored). It fails when the
// directory holds none, or when any of them cannot be parsed, naming the file: a broken file
// would otherwise make network names and the default silently depend on which files parse.
func LoadCatalog(dir string) (*Catalog, error) {
	files, err := libcni.ConfFiles(dir, []string{".conflist"})
	if err != nil {
		return nil, fmt.Errorf("read CNI conf dir %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CNI conflist in %s: add one or use --nics 0", dir)
	}
	slices.Sort(files)
	c := &Catalog{dir: dir}
	for _, f := range files {
		list, err := libcni.NetworkConfFromFile(f)
		if err != nil {
			return nil, fmt.Errorf("parse CNI conflist %s: %v: fix or remove the file", f, err)
		}
		if len(list.Plugins) == 0 {
			return nil, fmt.Errorf("parse CNI conflist %s: it lists no plugins: fix or remove the file", f)
		}
		c.lists = append(c.lists, list)
	}
	return c, nil
}

// Names lists the network names in file-name order; the first is the default.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.lists))
	for _, l := range c.lists {
		if !slices.Contains(names, l.Name) {
			names = append(names, l.Name)
		}
	}
	return names
}

// Get returns the conflist called name; "" means the default (first file). When several files
// share a name the first file wins, as in libcni's own lookup.
func (c *Catalog) Get(name string) (*libcni.NetworkConfigList, error) {
	if name == "" {
		return c.lists[0], nil
	}
	for _, l := range c.lists {
		if l.Name == name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("CNI network %q not found in %s (available: %s): pick one with --network",
		name, c.dir, strings.Join(c.Names(), ", "))
}

// CheckPlugins verifies that every plugin of list, and every IPAM plugin they name, exists in
// binDir, so a missing binary is reported before anything is created.
func CheckPlugins(list *libcni.NetworkConfigList, binDir string) error {
	for _, p := range list.Plugins {
		for _, name := range []string{p.Network.Type, p.Network.IPAM.Type} {
			if name == "" {
				continue
			}
			if _, err := invoke.FindInPath(name, []string{binDir}); err != nil {
				return fmt.Errorf("CNI plugin %q not found in %s: install containernetworking-plugins or set --cni-bin-dir", name, binDir)
			}
		}
	}
	return nil
}
