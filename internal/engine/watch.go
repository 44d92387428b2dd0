package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchVMs calls fn with the reconciled VM list at once, then on every change of the VM index
// (fsnotify on its directory: atomic renames replace the file's inode) and at least every
// interval, until ctx ends.
func (e *Engine) WatchVMs(ctx context.Context, interval time.Duration, fn func([]VM) error) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch VM index: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(e.vms.Path())
	if err := mkdirs(dir); err != nil {
		return err
	}
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	const debounce = 200 * time.Millisecond
	var pending <-chan time.Time
	for {
		vms, err := e.ListVMs(ctx)
		if err != nil {
			return err
		}
		if err := fn(vms); err != nil {
			return err
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev := <-w.Events:
				if filepath.Base(ev.Name) == filepath.Base(e.vms.Path()) && pending == nil {
					pending = time.After(debounce)
				}
			case err := <-w.Errors:
				return fmt.Errorf("watch VM index: %w", err)
			case <-pending:
				pending = nil
				break wait
			case <-tick.C:
				break wait
			}
		}
	}
}
