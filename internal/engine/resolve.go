package engine

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/store"
)

// resolveIn finds one VM by exact ID, exact name, or a unique ID prefix of at least 3 chars.
func resolveIn(x *vmIndex, ref string) (*VM, error) {
	if vm, ok := x.VMs[ref]; ok {
		return vm, nil
	}
	if id, ok := x.Names[ref]; ok {
		if vm, ok := x.VMs[id]; ok {
			return vm, nil
		}
	}
	if len(ref) >= 3 {
		var hits []*VM
		for id, vm := range x.VMs {
			if strings.HasPrefix(id, strings.ToUpper(ref)) {
				hits = append(hits, vm)
			}
		}
		if len(hits) == 1 {
			return hits[0], nil
		}
		if len(hits) > 1 {
			return nil, fmt.Errorf("VM %q: %w: %d VMs have IDs starting with it, give more characters", ref, ErrAmbiguous, len(hits))
		}
	}
	return nil, fmt.Errorf("VM %q: %w (see 'cocoon vm list')", ref, ErrNotFound)
}

// resolveIDs maps refs to unique IDs; any unknown ref fails the whole batch before anything runs.
func (e *Engine) resolveIDs(ctx context.Context, refs []string) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	err := e.vms.View(ctx, func(x *vmIndex) error {
		for _, r := range refs {
			vm, err := resolveIn(x, r)
			if err != nil {
				return err
			}
			if !seen[vm.ID] {
				seen[vm.ID] = true
				ids = append(ids, vm.ID)
			}
		}
		return nil
	})
	return ids, err
}

// reconcile writes back what it observes (see observe) and resumes guests an interrupted
// command left paused. It returns the reconciled records sorted by creation time. The index is
// rewritten only when a record really changed, so read commands stay cheap at scale.
func (e *Engine) reconcile(ctx context.Context) (all []VM, err error) {
	defer func() {
		if err == nil {
			e.resumeInterrupted(ctx, all)
		}
	}()
	var stale bool
	all, err = e.snapshotVMs(ctx, func(vm *VM) {
		if !stale {
			_, stale = e.observe(vm)
		}
	})
	if err != nil || !stale {
		return all, err
	}
	all = all[:0]
	err = e.vms.Update(ctx, func(x *vmIndex) error {
		changed := false
		for _, vm := range x.VMs {
			// Observe again under the write lock: a concurrent command may have changed it.
			if seen, ok := e.observe(vm); ok {
				*vm, changed = seen, true
			}
			all = append(all, *vm)
		}
		if !changed {
			return store.ErrUnchanged
		}
		return nil
	})
	sortVMs(all)
	return all, err
}

// observe returns the record as the processes show it and whether that differs: a running
// record whose hypervisor is gone is stopped; a hypervisor the record does not name (a command
// crashed between launching it and recording it, maybe before its guest was resumed) is
// recorded in state error, for the user to stop or remove. Records still being created are
// left to their command, or to rm.
func (e *Engine) observe(vm *VM) (VM, bool) {
	out := *vm
	if vm.State == StateCreating || vm.State == StateRunning && e.alive(vm) {
		return out, false
	}
	now := time.Now().UTC()
	if e.adoptHypervisor(&out) && !e.busy(vm.ID) {
		out.State, out.UpdatedAt = StateError, now
		out.LastError = "its hypervisor was launched by an interrupted command: stop or remove the VM"
		return out, true
	}
	if vm.State != StateRunning {
		return out, false
	}
	out.State, out.PID, out.PIDStart = StateStopped, 0, 0
	out.StoppedAt, out.UpdatedAt = &now, now
	return out, true
}

// adoptHypervisor points vm (a copy) at a live hypervisor of this VM that its record does not
// name, and reports whether there was one.
func (e *Engine) adoptHypervisor(vm *VM) bool {
	b, err := e.backendOf(vm)
	if err != nil {
		return false
	}
	f, ok := b.(hypervisor.Finder)
	if !ok {
		return false
	}
	p, ok := f.Find(hypervisor.VMRef{ID: vm.ID, RunDir: vm.RunDir})
	if !ok || p.PID == vm.PID && p.StartTime == vm.PIDStart {
		return false
	}
	vm.PID, vm.PIDStart = p.PID, p.StartTime
	return true
}

// busy reports whether a live command holds the VM's operation lock (a start or restore that
// has launched the hypervisor but not yet recorded it).
func (e *Engine) busy(id string) bool {
	l := e.vmLock(id)
	if l.TryLock() != nil {
		return true
	}
	l.Unlock() //nolint:errcheck
	return false
}

// snapshotVMs copies every record under the shared lock, calling see (which must not modify
// it) on each, sorted by creation.
func (e *Engine) snapshotVMs(ctx context.Context, see func(*VM)) ([]VM, error) {
	var all []VM
	err := e.vms.View(ctx, func(x *vmIndex) error {
		all = make([]VM, 0, len(x.VMs))
		for _, vm := range x.VMs {
			see(vm)
			all = append(all, *vm.clone())
		}
		return nil
	})
	sortVMs(all)
	return all, err
}

func sortVMs(all []VM) {
	sort.Slice(all, func(i, j int) bool { return all[i].CreatedAt.Before(all[j].CreatedAt) })
}

func (e *Engine) alive(vm *VM) bool {
	b, err := e.backendOf(vm)
	return err == nil && vm.PID > 0 && b.Alive(vm.ref())
}

// ListVMs returns all VMs with their observed state, but standbys: they are their snapshot's
// (see 'cocoon snapshot standby').
func (e *Engine) ListVMs(ctx context.Context) ([]VM, error) {
	all, err := e.reconcile(ctx)
	return slices.DeleteFunc(all, func(vm VM) bool { return vm.State == StateStandby }), err
}

// InspectVM returns one VM with its observed state.
func (e *Engine) InspectVM(ctx context.Context, ref string) (*VM, error) {
	all, err := e.reconcile(ctx)
	if err != nil {
		return nil, err
	}
	x := &vmIndex{}
	x.Init()
	for i := range all {
		x.VMs[all[i].ID] = &all[i]
		x.Names[all[i].Name] = all[i].ID
	}
	return resolveIn(x, ref)
}

var vmNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}$`)

func validateName(n string) error {
	if !vmNameRE.MatchString(n) {
		return fmt.Errorf("VM name %q is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", n)
	}
	if store.LooksLikeID(n) {
		return fmt.Errorf("VM name %q looks like a VM ID (26 letters and digits 2-7): pick a name refs cannot mistake for an ID", n)
	}
	return nil
}

// checkNotAnID refuses a name that equals or begins an existing VM ID: a ref resolves an exact
// name before an ID prefix, so the name would hide that VM from its short ID.
func checkNotAnID(x *vmIndex, n string) error {
	if id := store.ShadowedID(n, x.VMs); id != "" {
		return fmt.Errorf("VM name %q equals or begins the ID of VM %s: choose another --name", n, id)
	}
	return nil
}

// defaultName derives `cocoon-<repo>[-<tag>]` from an image ref, as the original did.
func defaultName(ref string) string {
	var n string
	if r, err := name.ParseReference(ref); err == nil && !strings.Contains(ref, "://") {
		repo := r.Context().RepositoryStr()
		repo = strings.TrimPrefix(repo, "library/")
		n = "cocoon-" + strings.ReplaceAll(repo, "/", "-")
		if t, ok := r.(name.Tag); ok && t.TagStr() != "latest" {
			n += "-" + t.TagStr()
		}
	} else {
		n = "cocoon-" + strings.NewReplacer("https://", "", "http://", "", "/", "-", ":", "-").Replace(ref)
	}
	n = regexp.MustCompile(`[^a-zA-Z0-9._-]`).ReplaceAllString(n, "-")
	if len(n) > 63 {
		n = n[:63]
	}
	return n
}

// uniqueName appends -2, -3, … to base until it is free in the index.
func uniqueName(x *vmIndex, base string) string {
	if _, taken := x.Names[base]; !taken {
		return base
	}
	for i := 2; ; i++ {
		suffix := fmt.Sprintf("-%d", i)
		n := base
		if len(n)+len(suffix) > 63 {
			n = n[:63-len(suffix)]
		}
		if _, taken := x.Names[n+suffix]; !taken {
			return n + suffix
		}
	}
}
