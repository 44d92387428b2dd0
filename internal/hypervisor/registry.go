package hypervisor

import (
	"cmp"
	"fmt"
	"slices"
	"sync"

	"github.com/cocoonstack/cocoon/internal/config"
)

// Registration is how a backend package makes itself known (from its init): the engine, the
// configuration check and the CLI read the registry and never name a backend.
type Registration struct {
	Name string
	// Auto ranks the backend for `--hypervisor auto`: the highest-ranked one that is Available
	// wins; 0 means auto never picks it (Firecracker is chosen by name only).
	Auto int
	// NeedsKVM: auto skips the backend where KVM cannot run stock guests (KVMUnusable).
	NeedsKVM bool
	New      func(cfg *config.Config) Backend
}

var (
	regMu    sync.RWMutex
	registry = map[string]Registration{}
)

// Register adds a backend; registering a name twice is a programming error.
func Register(r Registration) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[r.Name]; dup {
		panic(fmt.Sprintf("hypervisor backend %q registered twice", r.Name))
	}
	registry[r.Name] = r
}

// Registered lists the registered backends, the one auto prefers first.
func Registered() []Registration {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]Registration, 0, len(registry))
	for _, r := range registry {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Registration) int {
		return cmp.Or(cmp.Compare(b.Auto, a.Auto), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Names are the registered backend names, in Registered order.
func Names() []string {
	var names []string
	for _, r := range Registered() {
		names = append(names, r.Name)
	}
	return names
}
