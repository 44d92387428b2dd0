package store

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// rootIDFile holds the random identity of one Cocoon root. Run, log and memory dirs and
// bridge TAPs may be shared by several roots on a host; each root tags what it makes with
// this ID, so its GC removes only what it provably owns.
const rootIDFile = "root-id"

var rootIDRE = regexp.MustCompile(`^[A-Z2-7]{26}$`)

// RootID returns the identity of the root at rootDir, creating it on first use. Concurrent
// first uses agree: the file is linked into place only if it does not exist yet.
func RootID(rootDir string) (string, error) {
	p := filepath.Join(rootDir, rootIDFile)
	id, err := readRootID(p)
	if !errors.Is(err, os.ErrNotExist) {
		return id, err
	}
	if err := os.MkdirAll(rootDir, 0o750); err != nil {
		return "", fmt.Errorf("create root dir: %w", err)
	}
	tmp, err := os.CreateTemp(rootDir, ".root-id-*")
	if err != nil {
		return "", fmt.Errorf("create root id: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(rand.Text() + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if err = os.Link(tmp.Name(), p); errors.Is(err, os.ErrExist) {
			err = nil // another process won the race: its ID is the root's
		}
	}
	if err != nil {
		return "", fmt.Errorf("create root id: %w", err)
	}
	return readRootID(p)
}

func readRootID(p string) (string, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(data))
	if !rootIDRE.MatchString(id) {
		return "", fmt.Errorf("root id file %s holds %q, not a root id: restore it or remove it (GC then leaves this root's older VM dirs alone)", p, id)
	}
	return id, nil
}
