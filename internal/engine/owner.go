package engine

import (
	"os"
	"path/filepath"
	"strings"
)

// rootMarker is the file in each VM directory (run, log, memory) naming the root that made
// it. Those directories may be shared by several roots on a host, and GC removes only what it
// can prove is its own.
const rootMarker = ".cocoon-root"

// makeVMDirs creates a VM's directories and marks them as this root's.
func (e *Engine) makeVMDirs(dirs ...string) error {
	if err := mkdirs(dirs...); err != nil {
		return err
	}
	return e.markOwned(dirs...)
}

// markOwned writes the root marker into each dir that lacks it.
func (e *Engine) markOwned(dirs ...string) error {
	for _, d := range dirs {
		if dirOwner(d) == e.rootID {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, rootMarker), []byte(e.rootID+"\n"), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// dirOwner is the root ID in dir's marker, or "" when it has none.
func dirOwner(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, rootMarker))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
