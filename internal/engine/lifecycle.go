package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	units "github.com/docker/go-units"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/platform"
)

// Run creates a VM and starts it. A failed start keeps the VM (state error) for inspection.
func (e *Engine) Run(ctx context.Context, o CreateOptions) (*VM, error) {
	vm, err := e.Create(ctx, o)
	if err != nil {
		return nil, err
	}
	started, err := e.Start(ctx, vm.ID)
	if err != nil {
		return vm, fmt.Errorf("start VM %s: %w", vm.Name, err)
	}
	return started, nil
}

// Start boots a created or stopped VM; starting a running VM is a no-op.
func (e *Engine) Start(ctx context.Context, id string) (*VM, error) {
	var out *VM
	err := e.withVMLock(ctx, id, func() error {
		vm, err := e.getVM(ctx, id)
		if err != nil {
			return err
		}
		if vm.State == StateRunning && e.alive(vm) {
			out = vm
			return nil
		}
		if vm.State != StateRunning { // a running record whose process died may start again
			if err := checkTransition("start", vm); err != nil {
				return err
			}
		}
		out, err = e.launch(ctx, vm)
		return err
	})
	return out, err
}

// launch brings networking back if the host lost it, then starts the hypervisor.
func (e *Engine) launch(ctx context.Context, vm *VM) (*VM, error) {
	b, err := e.backendOf(vm)
	if err != nil {
		return nil, err
	}
	if err := e.recoverNetwork(ctx, vm); err != nil {
		return nil, e.markError(ctx, vm, err)
	}
	spec, files, err := e.buildSpec(vm, !vm.FirstBooted)
	defer closeFiles(files)
	if err != nil {
		return nil, e.markError(ctx, vm, err)
	}
	err = e.makeVMDirs(vm.RunDir, vm.LogDir)
	if err == nil {
		err = e.makeMemoryDir(spec.MemoryDir)
	}
	if err == nil {
		err = e.mergeMemory()
	}
	if err != nil {
		return nil, e.markError(ctx, vm, err)
	}
	proc, err := b.Start(ctx, spec)
	if err != nil {
		return nil, e.markError(ctx, vm, err)
	}
	return e.updateVM(ctx, vm.ID, func(r *VM) error {
		now := time.Now().UTC()
		r.State, r.LastError, r.PID, r.PIDStart, r.Accel, r.DiskAIO = StateRunning, "", proc.PID, proc.StartTime, proc.Accel, proc.DiskAIO
		r.StartedAt, r.FirstBooted, r.CidataAttached = &now, true, hasRole(spec.Disks, "cidata")
		return nil
	})
}

// recoverNetwork re-creates lost NICs (host reboot: the netns is gone) and persists the result.
func (e *Engine) recoverNetwork(ctx context.Context, vm *VM) error {
	if len(vm.Networks) == 0 || e.net.Verify(vm.ID, vm.Networks) == nil {
		return nil
	}
	atts, err := e.net.Setup(ctx, e.networkRequest(vm, vm.Networks))
	if err != nil {
		return fmt.Errorf("recover network: %w", err)
	}
	vm.Networks = atts
	_, err = e.updateVM(ctx, vm.ID, func(r *VM) error { r.Networks = atts; return nil })
	return err
}

// buildSpec translates the record into the backend-neutral VMSpec and opens the TAP queues.
// The cloud-init disk is attached only when withCidata (first boot, or resuming a snapshot
// whose process had it).
func (e *Engine) buildSpec(vm *VM, withCidata bool) (hypervisor.VMSpec, []*os.File, error) {
	spec := specOf(vm, withCidata)
	caps := e.caps(vm)
	var err error
	if spec.Boot.Kernel, err = e.bootKernel(caps, spec.Boot.Kernel); err != nil {
		return spec, nil, err
	}
	var files []*os.File
	for _, att := range vm.Networks {
		if caps.TapsByName {
			spec.NICs = append(spec.NICs, hypervisor.NIC{MAC: att.MAC, TapName: att.Tap, Queues: 1,
				QueueSize: att.QueueSize, MTU: att.MTU, Netns: att.NetnsPath})
			continue
		}
		fds, err := e.net.OpenTaps(att)
		if err != nil {
			return spec, files, fmt.Errorf("open TAP %s: %w", att.Tap, err)
		}
		files = append(files, fds...)
		spec.NICs = append(spec.NICs, hypervisor.NIC{MAC: att.MAC, Files: fds, TapName: att.Tap,
			Queues: len(fds), QueueSize: att.QueueSize, MTU: att.MTU, Netns: att.NetnsPath})
	}
	return spec, files, nil
}

// specOf is the VMSpec of a record without its NICs.
func specOf(vm *VM, withCidata bool) hypervisor.VMSpec {
	spec := hypervisor.VMSpec{
		ID: vm.ID, Name: vm.Name, CPUs: vm.Config.CPU, MaxCPUs: vm.maxCPU(), MemoryBytes: vm.Config.Memory,
		RunDir: vm.RunDir, LogDir: vm.LogDir, MemoryDir: vm.MemoryDir, Balloon: vm.Config.Memory >= 256<<20 && !vm.Config.Windows,
		Windows: vm.Config.Windows, DiskQueueSize: vm.Config.DiskQueueSize, Accel: vm.Config.Accel,
		Arch:  platform.Arch(platform.Or(vm.Config.Platform)),
		Agent: !vm.Config.NoAgent,
	}
	if dir := hugePageDir(vm.ID, vm.Config.Memory); dir != "" {
		spec.MemoryDir, spec.HugePages = dir, true
	}
	if vm.Boot != nil {
		spec.Boot = hypervisor.Boot{Kernel: vm.Boot.KernelPath, Initrd: vm.Boot.InitrdPath, Cmdline: vm.Boot.Cmdline,
			Firmware: vm.Boot.FirmwarePath, FirmwareVars: vm.Boot.FirmwareVars}
	}
	for _, d := range vm.Disks {
		if d.Role == "cidata" && !withCidata {
			continue // cloud-init runs on the first boot only
		}
		spec.Disks = append(spec.Disks, d)
	}
	return spec
}

func hasRole(disks []hypervisor.Disk, role string) bool {
	return slices.ContainsFunc(disks, func(d hypervisor.Disk) bool { return d.Role == role })
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// markError records a failed start and returns err for the caller.
func (e *Engine) markError(ctx context.Context, vm *VM, err error) error {
	_, uerr := e.updateVM(context.WithoutCancel(ctx), vm.ID, func(r *VM) error {
		r.State, r.LastError, r.PID, r.PIDStart = StateError, oneLine(err), 0, 0
		return nil
	})
	return errors.Join(err, uerr)
}

// StopOptions tune a stop.
type StopOptions struct {
	Force   bool
	Timeout time.Duration // 0: config stop_timeout_seconds
}

// Stop shuts a VM down: ACPI power button, then SIGTERM, then SIGKILL (Force skips ACPI).
// Stopping a VM that is not running leaves it as it is.
func (e *Engine) Stop(ctx context.Context, id string, o StopOptions) (*VM, error) {
	var out *VM
	err := e.withVMLock(ctx, id, func() error {
		vm, err := e.getVM(ctx, id)
		if err != nil {
			return err
		}
		if vm.State == StateCreating || vm.State == StateStandby {
			return checkTransition("stop", vm)
		}
		if vm.State != StateRunning && vm.State != StateError {
			out = vm
			return nil
		}
		out, err = e.stopLocked(ctx, vm, o)
		return err
	})
	return out, err
}

func (e *Engine) stopLocked(ctx context.Context, vm *VM, o StopOptions) (*VM, error) {
	if err := e.stopProcess(ctx, vm, o); err != nil {
		return nil, err
	}
	return e.updateVM(ctx, vm.ID, func(r *VM) error {
		now := time.Now().UTC()
		r.State, r.PID, r.PIDStart, r.StoppedAt, r.LastError = StateStopped, 0, 0, &now, ""
		return nil
	})
}

// getVM reads one record by ID (after reconciling its state).
func (e *Engine) getVM(ctx context.Context, id string) (*VM, error) {
	var vm *VM
	err := e.vms.View(ctx, func(x *vmIndex) error {
		r, ok := x.VMs[id]
		if !ok {
			return fmt.Errorf("VM %s: %w", id, ErrNotFound)
		}
		vm = r.clone()
		return nil
	})
	if err != nil {
		return &VM{}, err
	}
	return vm, nil
}

// stopProcess stops the VM's hypervisor process, if alive, without recording it (a failure is).
func (e *Engine) stopProcess(ctx context.Context, vm *VM, o StopOptions) error {
	b, err := e.backendOf(vm)
	if err != nil {
		return err
	}
	if o.Timeout <= 0 {
		o.Timeout = seconds(e.cfg.StopTimeoutSeconds)
	}
	if vm.PID > 0 && b.Alive(vm.ref()) {
		err := b.Stop(ctx, vm.ref(), hypervisor.StopOptions{Force: o.Force, Timeout: o.Timeout,
			TermGrace: seconds(e.cfg.TerminateGracePeriodSeconds), Request: e.agentPowerOff(b, vm)})
		if err != nil {
			return e.markError(ctx, vm, fmt.Errorf("stop: %w", err))
		}
		e.awaitConsoleRelay(b, vm)
	}
	return nil
}

// Batch runs op on every ref concurrently (bounded by pool_size); all refs are resolved first
// so an unknown ref fails the whole batch before anything happens. Successes are applied even
// when some items fail; the error joins the failures.
func (e *Engine) Batch(ctx context.Context, refs []string, op func(ctx context.Context, id string) error) ([]string, error) {
	return e.batch(ctx, refs, func(ctx context.Context, id string) (func() error, error) { return nil, op(ctx, id) })
}

// batch is Batch where op may return a finish step, run after op released its pool slot (a
// wait for a group commit must not keep other items from reaching it).
func (e *Engine) batch(ctx context.Context, refs []string, op func(ctx context.Context, id string) (finish func() error, err error)) ([]string, error) {
	ids, err := e.resolveIDs(ctx, refs)
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		ok   []string
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, e.cfg.PoolSize)
	)
	for _, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			finish, err := op(ctx, id)
			<-sem
			if err == nil && finish != nil {
				err = finish()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ok = append(ok, id)
		}()
	}
	wg.Wait()
	return ok, errors.Join(errs...)
}

// ConsolePaths returns the console socket and its attach lock for a running VM.
func (e *Engine) ConsolePaths(ctx context.Context, ref string) (socket, lockPath string, vm *VM, err error) {
	vm, err = e.InspectVM(ctx, ref)
	if err != nil {
		return "", "", nil, err
	}
	if vm.State != StateRunning {
		return "", "", nil, fmt.Errorf("VM %s is %s: start it first (cocoon vm start %s)", vm.Name, vm.State, vm.Name)
	}
	b, err := e.backendOf(vm)
	if err != nil {
		return "", "", nil, err
	}
	return b.ConsoleSocket(vm.ref()), filepath.Join(vm.RunDir, "console.lock"), vm, nil
}

func humanBytes(n int64) string { return units.BytesSize(float64(n)) }
