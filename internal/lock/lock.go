// Package lock provides cross-process file locks (flock(2)) with context-aware waiting.
//
// flock locks belong to an open file description, so two Lock values on the same path conflict
// even inside one process; no extra in-process mutex is needed.
package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gofrs/flock"
)

// ErrBusy is returned by TryLock when another holder has the lock.
var ErrBusy = errors.New("lock is held by another operation")

const retryDelay = 20 * time.Millisecond

// Lock is one lock file. Lock files are never deleted: flock binds to the inode, and deleting
// a lock file while someone waits on it would let two holders in.
type Lock struct {
	path string
	fl   *flock.Flock
}

// New returns a lock on path; the file and its parent directory are created on first use.
func New(path string) *Lock { return &Lock{path: path, fl: flock.New(path)} }

// Path is the lock file's path.
func (l *Lock) Path() string { return l.path }

func (l *Lock) prepare() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o750); err != nil {
		return fmt.Errorf("create lock dir for %s: %w", l.path, err)
	}
	return nil
}

// Lock waits for the exclusive lock until ctx ends.
func (l *Lock) Lock(ctx context.Context) error {
	return l.wait(ctx, l.fl.TryLockContext, "exclusive")
}

// RLock waits for a shared lock until ctx ends.
func (l *Lock) RLock(ctx context.Context) error {
	return l.wait(ctx, l.fl.TryRLockContext, "shared")
}

func (l *Lock) wait(ctx context.Context, try func(context.Context, time.Duration) (bool, error), kind string) error {
	if err := l.prepare(); err != nil {
		return err
	}
	ok, err := try(ctx, retryDelay)
	if err != nil {
		return fmt.Errorf("take %s lock %s: %w", kind, l.path, err)
	}
	if !ok {
		return fmt.Errorf("take %s lock %s: %w", kind, l.path, ErrBusy)
	}
	return nil
}

// TryLock takes the exclusive lock without waiting; it returns ErrBusy when it is held.
func (l *Lock) TryLock() error {
	if err := l.prepare(); err != nil {
		return err
	}
	ok, err := l.fl.TryLock()
	if err != nil {
		return fmt.Errorf("take lock %s: %w", l.path, err)
	}
	if !ok {
		return fmt.Errorf("take lock %s: %w", l.path, ErrBusy)
	}
	return nil
}

// Unlock releases the lock; releasing an unheld lock is harmless.
func (l *Lock) Unlock() error { return l.fl.Unlock() }
