package engine

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/cocoonstack/cocoon/internal/cloudinit"
	"github.com/cocoonstack/cocoon/internal/disk"
	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/image"
	"github.com/cocoonstack/cocoon/internal/network"
)

// CreateOptions are the user's choices for a new VM.
type CreateOptions struct {
	Image         string
	Name          string
	CPU           int
	Memory        int64
	Storage       int64
	NICs          int
	QueueSize     int
	DiskQueueSize int
	Network       string
	Bridge        string
	User          string
	Password      string
	NoDirectIO    bool
	Windows       bool
	Hypervisor    string // empty: config default
	Accel         string // empty: config default
	DataDisks     []disk.DataDisk
	Platform      string // linux/amd64 or linux/arm64; empty: the image's
	NoAgent       bool   // do not deliver the guest agent
}

const (
	minMemory  = 512 << 20
	minStorage = 1 << 30
)

func (o *CreateOptions) nameOr(image string) string {
	if o.Name != "" {
		return o.Name
	}
	return "from " + image
}

// validate checks the product's own rules that need no image or network; the backend's
// limits are checked on the planned spec (checkPlan). Both run before anything is made.
func (o *CreateOptions) validate() error {
	switch {
	case o.CPU < 1:
		return fmt.Errorf("--cpu must be at least 1, got %d", o.CPU)
	case o.CPU > runtime.NumCPU():
		return fmt.Errorf("--cpu %d exceeds the host's %d cores: use --cpu %d or fewer", o.CPU, runtime.NumCPU(), runtime.NumCPU())
	case o.Memory < minMemory:
		return fmt.Errorf("--memory must be at least 512M, got %d bytes", o.Memory)
	case o.Storage < minStorage:
		return fmt.Errorf("--storage must be at least 1G, got %d bytes", o.Storage)
	case o.NICs < 0:
		return fmt.Errorf("--nics must be 0 or more, got %d", o.NICs)
	case o.Bridge != "" && o.Network != "":
		return fmt.Errorf("--bridge and --network are mutually exclusive: pick one")
	}
	if o.Name != "" {
		if err := validateName(o.Name); err != nil {
			return err
		}
	}
	if err := cloudinit.ValidateUser(o.User); err != nil {
		return err
	}
	if err := disk.CheckDataDisks(o.DataDisks); err != nil {
		return err
	}
	return cloudinit.ValidatePassword(o.Password)
}

// checkImage refuses combinations the image kind or the backend cannot boot.
func checkImage(o *CreateOptions, img *image.Image, b hypervisor.Backend) error {
	caps := b.Capabilities()
	switch {
	case o.Windows && img.Kind != image.KindCloud:
		return fmt.Errorf("--windows requires a cloud image (UEFI boot), but %s is an OCI image (direct kernel boot)", img.Ref)
	case o.Windows && !caps.Windows:
		return fmt.Errorf("hypervisor %s does not support Windows guests", b.Name())
	case img.Kind == image.KindCloud && !caps.UEFI:
		return fmt.Errorf("hypervisor %s cannot boot cloud images (UEFI): use an OCI image or another hypervisor", b.Name())
	case img.Kind == image.KindCloud && o.Storage < img.VirtualSize:
		return fmt.Errorf("--storage %s is smaller than image %s (%s): use --storage %s or more",
			humanBytes(o.Storage), img.Ref, humanBytes(img.VirtualSize), humanBytes(img.VirtualSize))
	}
	return nil
}

// Create makes a VM in state created: record, directories, network, disks and boot config.
// On any failure everything made so far is undone and the record is gone.
func (e *Engine) Create(ctx context.Context, o CreateOptions) (*VM, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	b, err := e.backendFor(o.Hypervisor)
	if err != nil {
		return nil, err
	}
	img, err := e.images.Resolve(ctx, o.Image)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w (pull it first: cocoon image pull %s)", o.Image, err, o.Image)
	}
	if err := checkImage(&o, img, b); err != nil {
		return nil, err
	}
	plat, err := vmPlatform(o.Platform, img)
	if err != nil {
		return nil, err
	}
	if err := checkArch(b, plat); err != nil {
		return nil, err
	}
	if code, _ := e.firmware(&VM{Hypervisor: b.Name()}, plat); img.Kind == image.KindCloud {
		if _, err := os.Stat(code); err != nil {
			return nil, fmt.Errorf("UEFI firmware %s of hypervisor %s not found: install it or set its path in the configuration (cocoon doctor tells which)", code, b.Name())
		}
	}
	id := rand.Text()
	now := time.Now().UTC()
	vm := &VM{
		ID: id, Name: o.Name, Hypervisor: b.Name(), State: StateCreating,
		Config: VMConfig{CPU: o.CPU, MaxCPU: max(o.CPU, runtime.NumCPU()), Memory: o.Memory, Storage: o.Storage, NICs: o.NICs, QueueSize: o.QueueSize,
			DiskQueueSize: o.DiskQueueSize, Image: img.Ref, ImageDigest: img.Digest, ImageKind: string(img.Kind),
			Network: o.Network, Bridge: o.Bridge, NoDirectIO: o.NoDirectIO, Windows: o.Windows, Accel: o.Accel, Platform: plat,
			NoAgent: o.NoAgent},
		ImageBlobIDs: setOf(img.BlobIDs()),
		RunDir:       filepath.Join(e.cfg.RunDir, id),
		LogDir:       filepath.Join(e.cfg.LogDir, id),
		MemoryDir:    filepath.Join(e.cfg.MemoryDir, id),
		CreatedAt:    now, UpdatedAt: now,
	}
	if vm.Config.Accel == "" {
		vm.Config.Accel = e.cfg.Accel
	}
	if err := e.checkPlan(b, vm, func(c *VM) error { e.planDisks(c, img, o, false); return nil }); err != nil {
		return nil, err
	}
	if err := ensurePrivateDir(e.cfg.MemoryDir); err != nil {
		return nil, err
	}
	req := network.Request{NICs: o.NICs, Queues: nicQueues(b.Capabilities(), o.CPU), QueueSize: o.QueueSize, Network: o.Network, Bridge: o.Bridge}
	if o.NICs > 0 {
		if err := e.net.Validate(req); err != nil {
			return nil, err
		}
	}
	steps := []step{
		{"reserve record", func(ctx context.Context) error { return e.reserve(ctx, vm, defaultName(o.Image)) }, func(ctx context.Context) error { return e.dropRecord(ctx, id) }},
		{"create directories", func(context.Context) error { return e.makeVMDirs(vm.RunDir, vm.LogDir) }, func(context.Context) error { return removeAll(vm.RunDir, vm.LogDir, vm.MemoryDir) }},
		{"configure network", func(ctx context.Context) error { return e.setupNetwork(ctx, vm, req) }, func(ctx context.Context) error { return e.net.Teardown(ctx, id, vm.Networks) }},
		{"prepare disks", func(ctx context.Context) error { return e.prepareDisks(ctx, vm, img, o) }, nil},
		{"finalize", func(ctx context.Context) error { return e.finalize(ctx, vm) }, nil},
	}
	// The operation lock of the new ID keeps start, rm and gc away until creation is done.
	err = e.withVMLock(ctx, id, func() error { return runSteps(ctx, "create VM "+o.nameOr(o.Image), steps) })
	if err != nil {
		return nil, err
	}
	return vm, nil
}

// reserve writes the creating placeholder so the name is taken and a crash is visible to rm/gc.
// Without a name the VM gets defaultName, made unique.
func (e *Engine) reserve(ctx context.Context, vm *VM, defaultName string) error {
	return e.vms.Update(ctx, func(x *vmIndex) error {
		if vm.Name == "" {
			vm.Name = uniqueName(x, defaultName)
		} else if other, taken := x.Names[vm.Name]; taken {
			return fmt.Errorf("VM name %q already exists (id %s): choose another --name or remove it", vm.Name, other)
		} else if err := checkNotAnID(x, vm.Name); err != nil {
			return err
		}
		if _, clash := x.VMs[vm.ID]; clash {
			return fmt.Errorf("VM id collision %s: retry", vm.ID)
		}
		x.VMs[vm.ID] = vm
		x.Names[vm.Name] = vm.ID
		return nil
	})
}

func (e *Engine) dropRecord(ctx context.Context, id string) error {
	return e.dropRecords(ctx, []string{id})
}

// dropRecords removes records (and their names) in one index write.
func (e *Engine) dropRecords(ctx context.Context, ids []string) error {
	return e.vms.Update(ctx, func(x *vmIndex) error {
		for _, id := range ids {
			if vm, ok := x.VMs[id]; ok {
				if x.Names[vm.Name] == id {
					delete(x.Names, vm.Name)
				}
				delete(x.VMs, id)
			}
		}
		return nil
	})
}

// setupNetwork creates the NICs and persists them at once, so a crash later leaves a record
// through which rm and gc find and release them.
func (e *Engine) setupNetwork(ctx context.Context, vm *VM, req network.Request) error {
	if req.NICs == 0 {
		return nil
	}
	req.VMID = vm.ID
	atts, err := e.net.Setup(ctx, req)
	if err != nil {
		return err
	}
	vm.Networks = atts
	if vm.Config.Network == "" && len(atts) > 0 {
		vm.Config.Network = atts[0].Network
	}
	_, err = e.updateVM(ctx, vm.ID, func(r *VM) error { r.Networks, r.Config.Network = atts, vm.Config.Network; return nil })
	return err
}

func (e *Engine) finalize(ctx context.Context, vm *VM) error {
	vm.State = StateCreated
	_, err := e.updateVM(ctx, vm.ID, func(r *VM) error { *r = *vm; return nil })
	return err
}

// prepareDisks makes the writable disks and the boot configuration for the image kind.
func (e *Engine) prepareDisks(ctx context.Context, vm *VM, img *image.Image, o CreateOptions) error {
	direct := !o.NoDirectIO
	if direct && !disk.SupportsDirectIO(vm.RunDir) {
		slog.Warn("run dir does not support O_DIRECT, writable disks use the page cache", "run_dir", vm.RunDir)
		direct = false
	}
	// Planned again: the kernel command line carries the addresses of the NICs made since.
	e.planDisks(vm, img, o, direct)
	if img.Kind == image.KindOCI {
		if _, err := e.bootKernel(e.caps(vm), vm.Boot.KernelPath); err != nil { // made once per image, here rather than at the first start
			return err
		}
		if !vm.Config.NoAgent {
			if err := buildAgentLayer(ctx, vm); err != nil {
				return err
			}
		}
		if err := disk.CreateRawExt4(filepath.Join(vm.RunDir, "cow.raw"), vm.Config.Storage, "cocoon-cow"); err != nil {
			return fmt.Errorf("create COW disk for %s: %w", vm.Name, err)
		}
		return makeDataDisks(vm, o.DataDisks)
	}
	return e.prepareCloud(ctx, vm, img, o)
}

// planDisks sets the VM's disks and boot configuration for the image kind without making
// anything, so the whole spec can be validated before anything exists.
func (e *Engine) planDisks(vm *VM, img *image.Image, o CreateOptions, direct bool) {
	vm.Disks = nil
	if img.Kind != image.KindOCI {
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: filepath.Join(vm.RunDir, "overlay.qcow2"), Format: hypervisor.FormatQcow2, DirectIO: direct, Role: "cow"})
		planDataDisks(vm, o.DataDisks, direct)
		if !o.Windows {
			if !vm.Config.NoAgent { // attached at every boot, mounted through cloud-init (addCloudAgent)
				vm.Disks = append(vm.Disks, agentDisk(vm))
			}
			vm.Disks = append(vm.Disks, hypervisor.Disk{Path: filepath.Join(vm.RunDir, "cidata.img"), Format: hypervisor.FormatRaw, ReadOnly: true, Role: "cidata"})
		}
		vm.Boot = e.uefiBoot(vm, vm.RunDir)
		return
	}
	serials := make([]string, len(img.Layers))
	for i, l := range img.Layers { // bottom → top
		serials[i] = fmt.Sprintf("cocoon-layer%d", i)
		vm.Disks = append(vm.Disks, hypervisor.Disk{Path: l.Path, Format: hypervisor.FormatRaw, ReadOnly: true, Serial: serials[i], Role: "layer"})
	}
	if !vm.Config.NoAgent {
		d := agentDisk(vm)
		vm.Disks = append(vm.Disks, d)
		serials = append(serials, d.Serial) // the top layer
	}
	vm.Disks = append(vm.Disks, hypervisor.Disk{Path: filepath.Join(vm.RunDir, "cow.raw"), Format: hypervisor.FormatRaw, Serial: "cocoon-cow", DirectIO: direct, Role: "cow"})
	planDataDisks(vm, o.DataDisks, direct)
	top := make([]string, len(serials))
	for i := range serials {
		top[i] = serials[len(serials)-1-i]
	}
	vm.Boot = &BootConfig{KernelPath: img.KernelPath, InitrdPath: img.InitrdPath,
		Cmdline: kernelCmdline(vm, e.caps(vm), top, e.cfg.DNS)}
}

// prepareCloud makes the files planDisks planned for a cloud image.
func (e *Engine) prepareCloud(ctx context.Context, vm *VM, img *image.Image, o CreateOptions) error {
	overlay := filepath.Join(vm.RunDir, "overlay.qcow2")
	if err := disk.CreateQcow2Overlay(overlay, img.BlobPath, max(vm.Config.Storage, img.VirtualSize)); err != nil {
		return fmt.Errorf("create overlay disk for %s: %w", vm.Name, err)
	}
	if err := makeDataDisks(vm, o.DataDisks); err != nil {
		return err
	}
	if !o.Windows {
		sd := cloudSeed(vm, o.User, o.Password, e.cfg.DNS)
		if !vm.Config.NoAgent {
			if err := buildAgentLayer(ctx, vm); err != nil {
				return err
			}
			addCloudAgent(&sd)
		}
		if err := cloudinit.WriteImage(filepath.Join(vm.RunDir, "cidata.img"), sd); err != nil {
			return fmt.Errorf("create cloud-init seed for %s: %w", vm.Name, err)
		}
	}
	_, vars := e.firmware(vm, vm.Config.Platform)
	if vm.Boot.FirmwareVars == "" {
		return nil // firmware without a variables file
	}
	if _, err := disk.CloneFile(vm.Boot.FirmwareVars, vars); err != nil {
		return fmt.Errorf("copy UEFI variables %s for %s: %w (install ovmf or qemu-efi-aarch64, or set firmware_vars)", vars, vm.Name, err)
	}
	return nil
}

func cloudSeed(vm *VM, user, password string, dns []string) cloudinit.Seed {
	s := cloudinit.Seed{InstanceID: vm.ID, Hostname: vm.Name, User: user, Password: password, DNS: dns, Mounts: seedMounts(vm)}
	for _, n := range vm.Networks {
		s.NICs = append(s.NICs, cloudinit.NIC{MAC: n.MAC, IP: n.IP, Prefix: n.Prefix, Gateway: n.Gateway})
	}
	return s
}

func mkdirs(dirs ...string) error {
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
	}
	return nil
}

func removeAll(dirs ...string) error {
	var first error
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func setOf(ids []string) map[string]struct{} {
	m := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}
