package engine

import (
	"strings"
	"testing"
)

// FuzzResolveIn: a VM reference resolves to the VM it names (ID, name or unique ID prefix of
// at least 3 characters) or to an error, never to another VM.
func FuzzResolveIn(f *testing.F) {
	x := &vmIndex{}
	x.Init()
	for _, v := range []struct{ id, name string }{
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "web"}, {"ABCXYZ234567ABCXYZ234567AB", "ABCX"}, {"Q2345672345672345672345672", "db-1"},
	} {
		x.VMs[v.id] = &VM{ID: v.id, Name: v.name}
		x.Names[v.name] = v.id
	}
	for _, s := range []string{"web", "ABC", "abcd", "ABCX", "q23", "", "AB", "db-1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		vm, err := resolveIn(x, ref)
		if err != nil {
			return
		}
		if vm.ID != ref && vm.Name != ref && !(len(ref) >= 3 && strings.HasPrefix(vm.ID, strings.ToUpper(ref))) {
			t.Fatalf("ref %q resolved to %s (%s)", ref, vm.ID, vm.Name)
		}
	})
}

// FuzzDefaultName: the name derived from any image reference is a valid VM name.
func FuzzDefaultName(f *testing.F) {
	for _, s := range []string{"ghcr.io/cocoonstack/cocoon/ubuntu:24.04", "ubuntu", "https://x.example/a b.qcow2",
		"localhost:5000/a/b@sha256:" + strings.Repeat("a", 64), "", "-", strings.Repeat("x/", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if n := defaultName(ref); validateName(n) != nil {
			t.Fatalf("defaultName(%q) = %q, not a valid VM name", ref, n)
		}
	})
}
