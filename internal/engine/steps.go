package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cocoonstack/cocoon/internal/crashpoint"
)

// step is one named stage of a multi-step operation, with the undo that reverses it.
// Creation is an explicit ordered list of steps (as in firecracker-go-sdk's handlers) so the
// rollback of a failure half-way is the mirror of what was done, nothing more.
type step struct {
	name string
	do   func(ctx context.Context) error
	undo func(ctx context.Context) error
}

// runSteps runs steps in order; on the first failure it undoes the failed step and the ones
// before it in reverse (each undo must therefore tolerate partial work).
// Undo runs with a fresh context so that a cancelled command (Ctrl-C) still cleans up.
func runSteps(ctx context.Context, what string, steps []step) error {
	for i, s := range steps {
		crashpoint.Hit()
		t0 := time.Now()
		err := s.do(ctx)
		slog.Debug("step", "op", what, "step", s.name, "took", time.Since(t0), "ok", err == nil)
		if err != nil {
			for j := i; j >= 0; j-- {
				if u := steps[j].undo; u != nil {
					if uerr := u(context.WithoutCancel(ctx)); uerr != nil {
						slog.Warn("rollback step failed", "op", what, "step", steps[j].name, "err", uerr)
					}
				}
			}
			return fmt.Errorf("%s: %s: %w", what, s.name, err)
		}
	}
	return nil
}
