package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"
)

// Plan is one hypervisor launch as a backend describes it: what to run and which files belong
// to the running process. Run does everything else, the same way for every backend.
type Plan struct {
	Backend string // for messages: "qemu", "cloud-hypervisor", …
	VMID    string
	RunDir  string
	Binary  string
	Args    []string
	Files   []*os.File // become fds 3, 4, … in the child
	// Stdio, when set, is the child's stdin and stdout (Firecracker's serial console is its
	// stdio on a PTY); otherwise stdin is /dev/null and stdout goes to Log.
	Stdio *os.File
	Netns string // network namespace to start in (TAPs opened by name); "" = the caller's
	// Dir is the working directory of the process ("" = the caller's). Firecracker resolves
	// the relative drive paths it keeps in its snapshots against it.
	Dir     string
	Log     string // the hypervisor's own log: stdout and stderr are appended
	PIDFile string
	// Control is the control socket: it marks the process as this VM's (Owner.Marker) and
	// ready(ctx) is polled until it answers.
	Control string
	// Runtime lists the files that only a running process needs (sockets, pid file, device
	// layout): removed before a launch, after a failed one, and after a stop.
	Runtime []string
	// Cmdline, when set, receives the launch as a shell command (a record for people).
	Cmdline string
	// Prepare runs after stale runtime files are gone and before the launch (writes a device
	// layout, makes the RAM file); what it makes must be listed in Runtime or undone by Cleanup.
	Prepare func() error
	// Cleanup removes runtime state that is not a plain file in Runtime (a RAM file reached
	// through a link, agent sockets); it runs wherever Runtime files are removed.
	Cleanup func() error
	// Wait bounds the wait for the control socket to answer (default 10s).
	Wait time.Duration
	// NoHugePages keeps the process off transparent huge pages (LaunchOptions.NoHugePages).
	NoHugePages bool
}

// Owner is how a later command recognises the process of plan's VM.
func (p Plan) Owner() Owner { return Owner{Binary: p.Binary, Marker: p.Control, PIDFile: p.PIDFile} }

// Ready reports whether the control API answers; Run polls it until it does.
type Ready func(ctx context.Context) error

// Setup configures and boots (or restores) the launched process over its control API.
type Setup func(ctx context.Context) error

// Run launches plan's process detached, waits until ready answers, then runs setup (nil for
// none). On any failure the process is killed, its runtime files are removed and the error
// names the hypervisor's log, with its last line when it exited by itself. A VM whose
// hypervisor is already running is refused: clearing its runtime files would pull its
// sockets from under it.
func Run(ctx context.Context, p Plan, ready Ready, setup Setup) (Process, error) {
	if h, err := Open(VMRef{ID: p.VMID, RunDir: p.RunDir}, p.Owner()); err == nil {
		h.Close()
		return Process{}, fmt.Errorf("%s for VM %s: already running (pid %d): stop it first", p.Backend, p.VMID, h.PID)
	}
	if err := p.RemoveRuntime(); err != nil {
		return Process{}, err
	}
	err := writeCmdline(p)
	if err == nil && p.Prepare != nil {
		err = p.Prepare()
	}
	if err != nil {
		if cerr := p.RemoveRuntime(); cerr != nil {
			slog.Warn("clean up after failed start", "vm", p.VMID, "err", cerr)
		}
		return Process{}, fmt.Errorf("prepare run dir of VM %s: %w", p.VMID, err)
	}

	logStart := FileSize(p.Log)
	t0 := time.Now()
	child, err := Launch(LaunchOptions{Binary: p.Binary, Args: p.Args, ExtraFiles: p.Files, Stdio: p.Stdio, Netns: p.Netns, Dir: p.Dir,
		LogPath: p.Log, PIDPath: p.PIDFile, NoHugePages: p.NoHugePages})
	if err == nil {
		if err = await(ctx, p, child, ready, logStart); err == nil && setup != nil {
			slog.Debug("hypervisor answers", "backend", p.Backend, "vm", p.VMID, "took", time.Since(t0))
			t0 = time.Now()
			err = setup(ctx)
		}
		if err != nil {
			// When the hypervisor gave up by itself (a state it cannot load), its reason
			// beats ours, which is only the lost connection.
			select {
			case <-child.Exited():
				err = fmt.Errorf("%s exited: %s", p.Backend, LastLine(p.Log, logStart))
			case <-time.After(time.Second):
				child.Kill()
			}
		}
	}
	if err != nil {
		if cerr := p.RemoveRuntime(); cerr != nil {
			slog.Warn("clean up after failed start", "vm", p.VMID, "err", cerr)
		}
		return Process{}, fmt.Errorf("%s for VM %s: %w (log: %s)", p.Backend, p.VMID, err, p.Log)
	}
	slog.Debug("hypervisor started", "backend", p.Backend, "vm", p.VMID, "pid", child.PID, "setup", time.Since(t0))
	return child.Process, nil
}

// await polls ready until it answers, the process exits, or the wait runs out.
func await(ctx context.Context, p Plan, child *Child, ready Ready, logStart int64) error {
	wait := p.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	deadline := time.Now().Add(wait)
	// Every millisecond while a hypervisor usually comes up (QEMU makes its QMP socket within
	// ~30 ms of exec; a clone's whole budget is ~50 ms), then every 10 ms, so that many
	// launches waiting on a loaded host do not spin.
	started := time.Now()
	for {
		select {
		case <-child.Exited():
			return fmt.Errorf("%s exited during startup: %s", p.Backend, LastLine(p.Log, logStart))
		default:
		}
		err := ready(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("control socket %s did not answer within %v: %w", p.Control, wait, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for control socket: %w", ctx.Err())
		case <-child.Exited():
		case <-time.After(pollInterval(time.Since(started))):
		}
	}
}

func pollInterval(waited time.Duration) time.Duration {
	if waited < 200*time.Millisecond {
		return time.Millisecond
	}
	return 10 * time.Millisecond
}

func writeCmdline(p Plan) error {
	if p.Cmdline == "" {
		return nil
	}
	if err := os.WriteFile(p.Cmdline, []byte(ShellJoin(p.Binary, p.Args, false)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write cmdline of VM %s: %w", p.VMID, err)
	}
	return nil
}

// RemoveRuntime deletes the files only a running hypervisor needs.
func (p Plan) RemoveRuntime() error {
	var errs []error
	if p.Cleanup != nil {
		errs = append(errs, p.Cleanup())
	}
	for _, f := range p.Runtime {
		errs = append(errs, RemoveIfExists(f))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove runtime files in %s: %w", filepath.Dir(p.PIDFile), err)
	}
	return nil
}

// StopProcess stops the VM's hypervisor (graceful request, SIGTERM, SIGKILL as opts say) and
// then removes its runtime files. A VM with no live hypervisor of its own (no PID, process
// gone, PID reused by another program) is already stopped: nobody is signalled and only the
// files are removed.
func StopProcess(ctx context.Context, vm VMRef, p Plan, graceful func(context.Context) error, opts StopOptions) error {
	h, err := Open(vm, p.Owner())
	if errors.Is(err, ErrNotRunning) {
		slog.Debug("hypervisor not running, nothing to signal", "backend", p.Backend, "vm", vm.ID, "reason", err)
		return p.RemoveRuntime()
	}
	if err != nil {
		return fmt.Errorf("stop VM %s: %w", vm.ID, err)
	}
	defer h.Close()
	if opts.Request != nil {
		graceful = opts.Request
	}
	if err := Escalate(ctx, h, graceful, opts); err != nil {
		return fmt.Errorf("stop VM %s: %w", vm.ID, err)
	}
	return p.RemoveRuntime()
}

// IsAlive reports whether the VM's recorded process is alive and is its hypervisor.
func IsAlive(vm VMRef, o Owner) bool {
	h, err := Open(vm, o)
	if err != nil {
		return false
	}
	h.Close()
	return true
}

// RemoveIfExists removes path; a missing path is not an error.
func RemoveIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
