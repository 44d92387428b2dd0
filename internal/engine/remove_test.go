package engine

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// Removing many VMs drops their records in one index write when no other command holds them.
func TestRemoveVMsWritesTheIndexOnce(t *testing.T) {
	e := newTestEngine(t)
	seedVMs(t, e, 50)
	ctx := context.Background()
	var ids []string
	for i := range 40 {
		ids = append(ids, fmt.Sprintf("%026d", i))
	}
	g := newDropGroup(e, len(ids))
	ok, err := e.removeVMs(ctx, ids, false, g)
	if err != nil || len(ok) != len(ids) {
		t.Fatalf("removeVMs = %d removed, %v; want %d", len(ok), err, len(ids))
	}
	if g.writes != 1 {
		t.Fatalf("%d index writes for %d removals, want 1", g.writes, len(ids))
	}
	checkLeft(t, e, "vm40", "vm49", 10)
}

// A VM whose lock another command holds is not waited for by the writer: the others are
// dropped first, that one when its turn comes; a missing VM fails alone.
func TestRemoveVMsDoesNotWaitForABusyVM(t *testing.T) {
	e := newTestEngine(t)
	seedVMs(t, e, 10)
	ctx := context.Background()
	busy := e.vmLock(fmt.Sprintf("%026d", 3))
	if err := busy.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 6 {
		ids = append(ids, fmt.Sprintf("%026d", i))
	}
	g := newDropGroup(e, len(ids))
	type result struct {
		ok  []string
		err error
	}
	res := make(chan result, 1)
	go func() {
		ok, err := e.removeVMs(ctx, ids, false, g)
		res <- result{ok, err}
	}()
	for { // until the five free VMs are gone from the index
		n := 0
		if err := e.vms.View(ctx, func(x *vmIndex) error { n = len(x.VMs); return nil }); err != nil {
			t.Fatal(err)
		}
		if n == 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	busy.Unlock() //nolint:errcheck
	r := <-res
	if r.err != nil || len(r.ok) != len(ids) {
		t.Fatalf("removeVMs = %d removed, %v; want %d", len(r.ok), r.err, len(ids))
	}
	if g.writes != 2 {
		t.Fatalf("%d index writes, want 2 (the free VMs, then the busy one)", g.writes)
	}
	checkLeft(t, e, "vm6", "vm9", 4)
}

func checkLeft(t *testing.T, e *Engine, first, last string, n int) {
	t.Helper()
	vms, err := e.ListVMs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, vm := range vms {
		left = append(left, vm.Name)
	}
	sort.Strings(left)
	if len(left) != n || left[0] != first || left[n-1] != last {
		t.Fatalf("left %v, want %s..%s", left, first, last)
	}
}
