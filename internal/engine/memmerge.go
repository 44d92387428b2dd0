package engine

import (
	"log/slog"
	"sync"

	"github.com/cocoonstack/cocoon/internal/hypervisor"
)

var (
	markMergeable     sync.Once
	markMergeableErr  error
	warnedKSMNotAtRun sync.Once
)

// mergeMemory, with memory_merge set, makes the hypervisors this command launches (and their
// console relays) mergeable by KSM before the first launch: identical pages of VMs — QEMU's
// heap, the kernel copy every cold-booted VM of one image holds — are then stored once. It is
// opt in because page merging lets a guest learn through write timings which pages other guests
// hold: density for isolation.
func (e *Engine) mergeMemory() error {
	if !e.cfg.MemoryMerge {
		return nil
	}
	markMergeable.Do(func() { markMergeableErr = hypervisor.MarkMergeable() })
	if markMergeableErr != nil {
		return markMergeableErr
	}
	if on, err := hypervisor.KSMRunning(hypervisor.KSMDir); err != nil || !on {
		warnedKSMNotAtRun.Do(func() {
			slog.Warn("memory_merge is set but KSM is not running, so VMs share no pages: run cocoon doctor --fix (or echo 1 > /sys/kernel/mm/ksm/run)")
		})
	}
	return nil
}
