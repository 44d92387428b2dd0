package engine

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

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
	err := e.vms.Read(ctx, func(x *vmIndex) error {
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

// reconcile writes back what it observes: a VM recorded as running whose hypervisor process is
// gone becomes stopped. It returns the reconciled records sorted by creation time. The index is
// rewritten only when a record really changed, so read commands stay cheap at scale.
func (e *Engine) reconcile(ctx context.Context) ([]VM, error) {
	var dead bool
	all, err := e.snapshotVMs(ctx, func(vm *VM) { dead = dead || (vm.State == StateRunning && !e.alive(vm)) })
	if err != nil || !dead {
		return all, err
	}
	all = all[:0]
	err = e.vms.Update(ctx, func(x *vmIndex) error {
		now := time.Now().UTC()
		changed := false
		for _, vm := range x.VMs {
			// Re-check under the write lock: a concurrent start may have relaunched it.
			if vm.State == StateRunning && !e.alive(vm) {
				vm.State, vm.PID, vm.PIDStart = StateStopped, 0, 0
				vm.StoppedAt, vm.UpdatedAt = &now, now
				changed = true
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

// snapshotVMs copies every record under the shared lock, calling see on each, sorted by creation.
func (e *Engine) snapshotVMs(ctx context.Context, see func(*VM)) ([]VM, error) {
	var all []VM
	err := e.vms.Read(ctx, func(x *vmIndex) error {
		all = make([]VM, 0, len(x.VMs))
		for _, vm := range x.VMs {
			see(vm)
			all = append(all, *vm)
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

// ListVMs returns all VMs with their observed state.
func (e *Engine) ListVMs(ctx context.Context) ([]VM, error) { return e.reconcile(ctx) }

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
