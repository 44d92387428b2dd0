package qemu

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Disk I/O submission modes (-drive aio=).
const (
	aioIOURing = "io_uring"
	aioThreads = "threads"
)

// aioMode is how this backend's QEMUs submit disk I/O, probed once per process. Linux native
// AIO is never used: every QEMU takes a 1024-event context from the host-wide fs.aio-max-nr
// pool (65536 by default), so the 64th VM on a default host would fail to start. io_uring has
// no such pool; where QEMU or the kernel cannot use it, QEMU's thread pool does the I/O.
func (b *Backend) aioMode() string {
	b.aioOnce.Do(func() {
		var reason string
		b.aio, reason = probeAIO(b.binary)
		if b.aio != aioIOURing {
			slog.Warn("io_uring is unusable for QEMU disk I/O, using aio=threads", "reason", reason)
			return
		}
		slog.Debug("QEMU disk I/O uses aio=io_uring")
	})
	return b.aio
}

// probeAIO really opens a drive with aio=io_uring in a machine-less QEMU (about 0.2 s): the
// version, the build (liburing) and the kernel (io_uring_disabled, seccomp) all must agree.
func probeAIO(binary string) (mode, reason string) {
	f, err := os.CreateTemp("", "cocoon-aio-probe-*.raw")
	if err != nil {
		return aioThreads, "create probe file: " + err.Error()
	}
	f.Close()
	defer os.Remove(f.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "-machine", "none", "-nodefaults", "-no-user-config", "-display", "none", "-S",
		"-drive", "file="+optEscape(f.Name())+",if=none,id=probe,format=raw,aio="+aioIOURing, "-qmp", "stdio")
	cmd.Stdin = strings.NewReader(`{"execute":"qmp_capabilities"}` + "\n" + `{"execute":"quit"}` + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		return aioThreads, strings.TrimSpace(err.Error() + ": " + lines[len(lines)-1])
	}
	return aioIOURing, ""
}
