package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Escalate stops the process behind h: unless opts.Force, it calls request (the backend's
// graceful power-off) and waits up to opts.Timeout; then SIGTERM, opts.TermGrace, SIGKILL.
// It returns nil once the process is gone. Cancelling ctx aborts the waits.
func Escalate(ctx context.Context, h *Handle, request func(context.Context) error, opts StopOptions) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("stop pid %d: %w", h.PID, err)
	}
	timeout, grace := opts.Timeout, opts.TermGrace
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	if grace <= 0 {
		grace = DefaultTermGrace
	}

	if !opts.Force {
		if err := request(ctx); err != nil {
			slog.Warn("graceful stop request failed, terminating", "pid", h.PID, "err", err)
		} else {
			exited, err := h.WaitExit(ctx, timeout)
			if err != nil || exited {
				return err
			}
			slog.Warn("guest did not power off in time, terminating", "pid", h.PID, "timeout", timeout)
		}
	}

	if gone, err := signalAndWait(ctx, h, unix.SIGTERM, grace); gone || err != nil {
		return err
	}
	slog.Warn("hypervisor ignored SIGTERM, killing", "pid", h.PID, "grace", grace)
	gone, err := signalAndWait(ctx, h, unix.SIGKILL, killWait)
	if err == nil && !gone {
		err = fmt.Errorf("pid %d still alive %v after SIGKILL", h.PID, killWait)
	}
	return err
}

func signalAndWait(ctx context.Context, h *Handle, sig unix.Signal, wait time.Duration) (bool, error) {
	if err := h.Signal(sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return true, nil
		}
		return false, err
	}
	return h.WaitExit(ctx, wait)
}
