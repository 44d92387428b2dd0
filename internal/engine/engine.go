// Package engine holds Cocoon's use cases: create, run, start, stop, rm, console, debug, gc.
// It owns ordering, rollback and locking across the modules (images, disks, network,
// hypervisor backends) and is usable as a Go library; the CLI only parses and prints.
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cocoonstack/cocoon/internal/config"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	_ "github.com/cocoonstack/cocoon/internal/hypervisor/backends" // every backend registers itself
	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/lock"
	"github.com/cocoonstack/cocoon/internal/network"
	"github.com/cocoonstack/cocoon/internal/snapshot"
	"github.com/cocoonstack/cocoon/internal/store"
)

// Engine is one configured Cocoon instance.
type Engine struct {
	cfg      *config.Config
	images   *image.Manager
	net      *network.Manager
	backends map[string]hypervisor.Backend
	vms      *store.Store[vmIndex, *vmIndex]
	snaps    *snapshot.Store
	vmDir    string // <root>/vm: index and per-VM locks
	rootID   string // tags this root's VM dirs and TAPs (store.RootID)
}

// Options are per-process settings the CLI passes down.
type Options struct {
	Progress *os.File // where pull progress goes (shown only when it is a terminal)
	Insecure bool     // allow plain-HTTP registries beyond loopback
}

// New checks that the state directories are usable and wires the modules.
func New(cfg *config.Config, opts Options) (*Engine, error) {
	for _, d := range []struct{ key, dir string }{{"root-dir", cfg.RootDir}, {"run-dir", cfg.RunDir}, {"log-dir", cfg.LogDir}} {
		if err := ensureWritableDir(d.dir); err != nil {
			return nil, fmt.Errorf("--%s %s is not usable: %w (choose another directory or run as root)", d.key, d.dir, err)
		}
	}
	rootID, err := store.RootID(cfg.RootDir)
	if err != nil {
		return nil, err
	}
	iopts := image.Options{PoolSize: cfg.PoolSize, Insecure: opts.Insecure, MaxLayerBytes: cfg.MaxLayerBytes}
	if opts.Progress != nil {
		iopts.Progress = opts.Progress
	}
	vmDir := filepath.Join(cfg.RootDir, "vm")
	e := &Engine{
		cfg:      cfg,
		images:   image.NewManager(cfg.RootDir, iopts),
		net:      network.NewManager(cfg.RootDir, cfg.CNIConfDir, cfg.CNIBinDir),
		backends: map[string]hypervisor.Backend{},
		vms:      store.New[vmIndex](filepath.Join(vmDir, "db"), "vms", vmSchema),
		snaps:    snapshot.NewStore(cfg.RootDir),
		vmDir:    vmDir,
		rootID:   rootID,
	}
	for _, r := range hypervisor.Registered() {
		b := r.New(cfg)
		e.backends[r.Name] = b
		if sn, ok := b.(hypervisor.Snapshotter); ok {
			snapshot.DeclareStateFiles(r.Name, sn.StateFile)
		}
	}
	if _, ok := e.backends[cfg.Hypervisor]; !ok && cfg.Hypervisor != "auto" && cfg.Hypervisor != "" {
		return nil, fmt.Errorf("hypervisor %q in the configuration is not one of auto, %s", cfg.Hypervisor, strings.Join(hypervisor.Names(), ", "))
	}
	return e, nil
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// ensureWritableDir creates dir if needed and proves it is writable without leaving anything.
func ensureWritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return err
	}
	f.Close()
	return os.Remove(f.Name())
}

// backendFor picks the backend for a new VM: the flag, else the config, where auto means the
// highest-ranked registered backend that can run here (Cloud Hypervisor when its binary and
// a usable KVM exist, else QEMU).
func (e *Engine) backendFor(name string) (hypervisor.Backend, error) {
	if name == "" {
		name = e.cfg.Hypervisor
	}
	if name == "auto" || name == "" {
		var whyNot []string
		for _, r := range hypervisor.Registered() {
			if r.Auto == 0 {
				continue
			}
			if why := hypervisor.KVMUnusable(); r.NeedsKVM && why != "" {
				whyNot = append(whyNot, r.Name+": "+why)
				continue
			}
			err := e.backends[r.Name].Available()
			if err == nil {
				return e.backends[r.Name], nil
			}
			whyNot = append(whyNot, err.Error())
		}
		return nil, fmt.Errorf("no hypervisor can run here: %s", strings.Join(whyNot, "; "))
	}
	b, ok := e.backends[name]
	if !ok {
		return nil, fmt.Errorf("hypervisor %q is not supported by this build: use auto, %s", name, strings.Join(hypervisor.Names(), ", "))
	}
	if err := b.Available(); err != nil {
		return nil, fmt.Errorf("hypervisor %s is not usable: %w", name, err)
	}
	return b, nil
}

// backendOf returns the backend a VM was created with.
func (e *Engine) backendOf(vm *VM) (hypervisor.Backend, error) {
	b, ok := e.backends[vm.Hypervisor]
	if !ok {
		return nil, fmt.Errorf("VM %s uses hypervisor %q, which this build does not support", vm.Name, vm.Hypervisor)
	}
	return b, nil
}

// vmLock is the per-VM operation lock: held for a whole start/stop/rm, while the index lock
// is only taken for each short read-modify-write.
func (e *Engine) vmLock(id string) *lock.Lock { return store.RecordLock(e.vmDir, "vm", id) }

// withVMLock runs fn holding the VM's operation lock, after resuming the guest if a command
// killed mid-way left it paused.
func (e *Engine) withVMLock(ctx context.Context, id string, fn func() error) error {
	l := e.vmLock(id)
	if err := l.Lock(ctx); err != nil {
		return fmt.Errorf("lock VM %s: %w", id, err)
	}
	defer l.Unlock() //nolint:errcheck
	e.resumeIfInterrupted(ctx, id)
	return fn()
}

// updateVM applies fn to one VM record in a short index update.
func (e *Engine) updateVM(ctx context.Context, id string, fn func(*VM) error) (*VM, error) {
	var out VM
	err := e.vms.Update(ctx, func(x *vmIndex) error {
		vm, ok := x.VMs[id]
		if !ok {
			return fmt.Errorf("VM %s: %w", id, ErrNotFound)
		}
		if err := fn(vm); err != nil {
			return err
		}
		vm.UpdatedAt = time.Now().UTC()
		out = *vm
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Errors the CLI maps to messages; wrap them with context.
var (
	ErrNotFound  = errors.New("not found")
	ErrAmbiguous = errors.New("ambiguous reference")
)
