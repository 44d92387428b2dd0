package firecracker

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
	"github.com/cocoonstack/cocoon/internal/hypervisor/rest"
)

// Stop implements hypervisor.Backend. The graceful request is Ctrl-Alt-Del: with reboot=k the
// guest's reboot ends the FC process. Force skips it (signals only).
func (b *Backend) Stop(ctx context.Context, vm hypervisor.VMRef, opts hypervisor.StopOptions) error {
	ctrlAltDel := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		c := api(vm.RunDir)
		// A paused guest (a snapshot that never resumed) cannot see the key press.
		var info instanceInfo
		if err := c.Do(ctx, rest.Call{Method: http.MethodGet, Path: "/", Out: &info}); err != nil {
			return err
		}
		if info.State == "Paused" {
			if err := c.Do(ctx, setVMState("Resumed")); err != nil {
				return err
			}
		}
		return c.Do(ctx, put("/actions", action{ActionType: "SendCtrlAltDel"}))
	}
	return hypervisor.StopProcess(ctx, vm, b.plan(vm.RunDir, ""), ctrlAltDel, opts)
}

// Pause implements hypervisor.Snapshotter.
func (b *Backend) Pause(ctx context.Context, vm hypervisor.VMRef) error {
	if err := api(vm.RunDir).Do(ctx, setVMState("Paused")); err != nil {
		return fmt.Errorf("pause VM %s: %w", vm.ID, err)
	}
	return nil
}

// Resume implements hypervisor.Snapshotter.
func (b *Backend) Resume(ctx context.Context, vm hypervisor.VMRef) error {
	if err := api(vm.RunDir).Do(ctx, setVMState("Resumed")); err != nil {
		return fmt.Errorf("resume VM %s: %w", vm.ID, err)
	}
	return nil
}
