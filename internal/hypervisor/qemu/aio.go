package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
// The answer is kept in the cache dir (see aioProbeKey): probing runs a QEMU, which would
// otherwise be most of a clone's time.
func (b *Backend) aioMode() string {
	b.aioOnce.Do(func() {
		key := aioProbeKey(b.binary)
		if mode, reason, ok := b.cachedAIO(key); ok {
			b.aio = mode
			slog.Debug("QEMU disk I/O mode from probe cache", "aio", mode, "reason", reason)
			return
		}
		var reason string
		b.aio, reason = probeAIO(b.binary)
		b.storeAIO(key, b.aio, reason)
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

// aioProbe is the cached result of probeAIO, valid while Key matches.
type aioProbe struct {
	Key    string `json:"key"`
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"`
}

func (b *Backend) probeCache() string {
	if b.cacheDir == "" {
		return ""
	}
	return filepath.Join(b.cacheDir, ".qemu-aio-probe.json")
}

// aioProbeKey names everything the probe's answer depends on: the QEMU binary (path, inode,
// size, mtime: an upgrade changes it), the running kernel (boot id: a reboot may bring
// another kernel) and the io_uring switch. "" when the binary cannot be found: never cached.
func aioProbeKey(binary string) string {
	path, err := exec.LookPath(binary)
	if err != nil {
		return ""
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return ""
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	disabled, _ := os.ReadFile("/proc/sys/kernel/io_uring_disabled")
	return fmt.Sprintf("%s:%d:%d:%d:%d:%s:%s", path, st.Dev, st.Ino, st.Size, st.Mtim.Nano(),
		strings.TrimSpace(string(boot)), strings.TrimSpace(string(disabled)))
}

func (b *Backend) cachedAIO(key string) (mode, reason string, ok bool) {
	p := b.probeCache()
	if p == "" || key == "" {
		return "", "", false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return "", "", false
	}
	var c aioProbe
	if json.Unmarshal(data, &c) != nil || c.Key != key || (c.Mode != aioIOURing && c.Mode != aioThreads) {
		return "", "", false
	}
	return c.Mode, c.Reason, true
}

// storeAIO keeps a probe's answer; a cache that cannot be written only costs the next
// command another probe. Rename makes the file whole or absent; it needs no fsync, since
// losing it is harmless.
func (b *Backend) storeAIO(key, mode, reason string) {
	p := b.probeCache()
	if p == "" || key == "" {
		return
	}
	data, _ := json.Marshal(aioProbe{Key: key, Mode: mode, Reason: reason})
	if err := os.MkdirAll(b.cacheDir, 0o700); err != nil {
		slog.Debug("keep QEMU aio probe", "err", err)
		return
	}
	tmp, err := os.CreateTemp(b.cacheDir, ".qemu-aio-probe-*")
	if err != nil {
		slog.Debug("keep QEMU aio probe", "err", err)
		return
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		slog.Debug("keep QEMU aio probe", "err", err)
	}
}
