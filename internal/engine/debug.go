package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/image"
)

// DebugOptions add to CreateOptions where the prepared disks go.
type DebugOptions struct {
	CreateOptions
	COWPath string // the writable disk the recipe prepares; sockets and logs go beside it (default ./cow-<name>.raw|qcow2)
	MaxCPU  int    // vCPUs the recipe's VM can grow to (0 = --cpu)
	// BalloonMB is the balloon size in MiB (0 = a quarter of the memory).
	BalloonMB int
	// CHBinary is the cloud-hypervisor binary the recipe names ("" = the configured one).
	CHBinary string
}

// Debug prints a copy-pasteable recipe that boots the same VM by hand: disk preparation and
// the hypervisor command line. Nothing is created. NICs are left out: they need the engine's
// network namespace and TAPs.
func (e *Engine) Debug(ctx context.Context, o DebugOptions) (string, error) {
	if err := o.validate(); err != nil {
		return "", err
	}
	switch {
	case o.MaxCPU < 0:
		return "", fmt.Errorf("--max-cpu %d: use 0 (the --cpu count) or more", o.MaxCPU)
	case o.BalloonMB < 0 || int64(o.BalloonMB)<<20 >= o.Memory:
		return "", fmt.Errorf("--balloon %d MB: use 0 (a quarter of the memory) or a size below --memory", o.BalloonMB)
	}
	b, err := e.debugBackend(o)
	if err != nil {
		return "", err
	}
	img, err := e.images.Resolve(ctx, o.Image)
	if err != nil {
		return "", fmt.Errorf("image %q: %w (pull it first: cocoon image pull %s)", o.Image, err, o.Image)
	}
	if err := checkImage(&o.CreateOptions, img, b); err != nil {
		return "", err
	}
	if len(o.DataDisks) > 0 {
		slog.Warn("vm debug ignores --data-disk: the recipe prepares only the boot disks")
	}
	plat, err := vmPlatform(o.Platform, img)
	if err != nil {
		return "", err
	}
	if err := checkArch(b, plat); err != nil {
		return "", err
	}
	name := o.Name
	if name == "" {
		name = defaultName(o.Image)
	}
	// Paths in the recipe are absolute, as the hypervisor requires: relative ones are taken
	// from the current directory.
	dir, err := filepath.Abs(".")
	if err == nil && o.COWPath != "" {
		o.COWPath, err = filepath.Abs(o.COWPath)
		dir = filepath.Dir(o.COWPath)
	}
	if err != nil {
		return "", fmt.Errorf("resolve the recipe's directory: %w", err)
	}
	// No guest agent: the recipe builds no agent layer, so its channel would serve nothing.
	vm := &VM{ID: "debug-" + name, Name: name, Hypervisor: b.Name(), Config: VMConfig{CPU: o.CPU, Memory: o.Memory,
		DiskQueueSize: o.DiskQueueSize, Accel: o.Accel, Windows: o.Windows, Platform: plat, NoAgent: true}, RunDir: dir, LogDir: dir,
		MemoryDir: filepath.Join(e.cfg.MemoryDir, "debug-"+name)}
	if vm.Config.Accel == "" {
		vm.Config.Accel = e.cfg.Accel
	}
	var prep []string
	if img.Kind == image.KindOCI {
		var top []string
		for i, l := range img.Layers {
			serial := fmt.Sprintf("cocoon-layer%d", i)
			top = append([]string{serial}, top...)
			vm.Disks = append(vm.Disks, hypervisor.Disk{Path: l.Path, Format: hypervisor.FormatRaw, ReadOnly: true, Serial: serial, Role: "layer"})
		}
		cow := cmp.Or(o.COWPath, filepath.Join(dir, "cow-"+name+".raw"))
		prep = append(prep, "truncate -s "+fmt.Sprint(o.Storage)+" "+hypervisor.ShellQuote(cow),
			"mkfs.ext4 -F -q -m 0 -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "+hypervisor.ShellQuote(cow))
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: cow, Format: hypervisor.FormatRaw, Serial: "cocoon-cow", DirectIO: !o.NoDirectIO, Role: "cow"})
		vm.Boot = &BootConfig{KernelPath: img.KernelPath, InitrdPath: img.InitrdPath, Cmdline: kernelCmdline(vm, b.Capabilities(), top, e.cfg.DNS)}
	} else {
		overlay := cmp.Or(o.COWPath, filepath.Join(dir, "cow-"+name+".qcow2"))
		code, varsTemplate := e.firmware(vm, plat)
		argv := disk.Qcow2OverlayArgv(img.BlobPath, overlay, max(o.Storage, img.VirtualSize))
		prep = append(prep, hypervisor.ShellJoin(argv[0], argv[1:], false))
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: overlay, Format: hypervisor.FormatQcow2, DirectIO: !o.NoDirectIO, Role: "cow"})
		vm.Boot = &BootConfig{FirmwarePath: code}
		if varsTemplate != "" && b.Capabilities().FirmwareVars {
			vm.Boot.FirmwareVars = filepath.Join(dir, "vars-"+name+".fd")
			prep = append(prep, "cp "+hypervisor.ShellQuote(varsTemplate)+" "+hypervisor.ShellQuote(vm.Boot.FirmwareVars))
		}
	}
	if err := e.checkPlan(b, vm, func(*VM) error { return nil }); err != nil {
		return "", err
	}
	vm.Config.MaxCPU = max(o.MaxCPU, o.CPU)
	spec := specOf(vm, true)
	spec.BalloonBytes = int64(o.BalloonMB) << 20
	if spec.Boot.Kernel, err = e.bootKernel(b.Capabilities(), spec.Boot.Kernel); err != nil {
		return "", err
	}
	cmd, err := b.DebugCommand(spec)
	if err != nil {
		return "", err
	}
	prep = append(prep, "mkdir -p -m 0700 "+hypervisor.ShellQuote(vm.MemoryDir))
	return "# Prepare disks\n" + strings.Join(prep, "\n") + "\n\n# Launch\n" + cmd + "\n", nil
}

// debugBackend is the backend the recipe is for, built from a configuration that names the
// --ch binary when one is given.
func (e *Engine) debugBackend(o DebugOptions) (hypervisor.Backend, error) {
	b, err := e.backendFor(o.Hypervisor)
	if err != nil || o.CHBinary == "" {
		return b, err
	}
	cfg := *e.cfg
	cfg.CHBinary = o.CHBinary
	for _, r := range hypervisor.Registered() {
		if r.Name == b.Name() {
			return r.New(&cfg), nil
		}
	}
	return b, nil
}
